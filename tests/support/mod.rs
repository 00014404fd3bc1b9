//! Test actors and coordination helpers shared by the integration tests.
//!
//! Coordination between a test and an actor goes through named gates and gauges kept in
//! statics of the test process (keyed by a tag unique to each test), so tests wait on
//! events, never on time. Actors reach them through a [`Probe`] actor that lives in the
//! test process and whose handle travels to them, so the same tests work when the actors
//! run in other processes.

#![allow(dead_code)]

pub mod blobs;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use kt::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A process-wide table of watch channels by tag.
struct Table<T>(LazyLock<Mutex<HashMap<String, watch::Sender<T>>>>);

impl<T: Default + Clone> Table<T> {
    const fn new() -> Self {
        Table(LazyLock::new(Default::default))
    }

    fn get(&self, tag: &str) -> watch::Sender<T> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tag.to_string())
            .or_insert_with(|| watch::channel(T::default()).0)
            .clone()
    }
}

static GATES: Table<bool> = Table::new();
static GAUGES: Table<usize> = Table::new();
static STOPS: Table<Option<DeathCause>> = Table::new();

/// Opens the gate `tag`: every waiter, present and future, passes.
pub fn open_gate(tag: &str) {
    GATES.get(tag).send_replace(true);
}

/// Waits until the gate `tag` is open.
pub async fn wait_gate(tag: &str) {
    let mut rx = GATES.get(tag).subscribe();
    let _ = rx.wait_for(|open| *open).await;
}

/// Adds `delta` to the gauge `tag` and returns the new value.
pub fn gauge_add(tag: &str, delta: isize) -> usize {
    let gauge = GAUGES.get(tag);
    let mut value = 0;
    gauge.send_modify(|v| {
        *v = v.checked_add_signed(delta).unwrap_or(0);
        value = *v;
    });
    value
}

/// Waits until the gauge `tag` reaches at least `target`.
pub async fn gauge_reaches(tag: &str, target: usize) {
    let mut rx = GAUGES.get(tag).subscribe();
    let _ = rx.wait_for(|v| *v >= target).await;
}

/// The gauge's current value.
pub fn gauge(tag: &str) -> usize {
    *GAUGES.get(tag).borrow()
}

/// Records that the actor tagged `tag` ran `on_stop` with `cause`.
pub fn record_stop(tag: &str, cause: DeathCause) {
    STOPS.get(tag).send_replace(Some(cause));
}

/// Waits until the actor tagged `tag` ran `on_stop`, and returns the cause it saw.
pub async fn stopped_with(tag: &str) -> DeathCause {
    let mut rx = STOPS.get(tag).subscribe();
    let seen = rx.wait_for(Option::is_some).await.map(|v| v.clone());
    seen.ok().flatten().unwrap_or(DeathCause::RuntimeShutdown)
}

/// Whether the actor tagged `tag` has run `on_stop`.
pub fn has_stopped(tag: &str) -> bool {
    STOPS.get(tag).borrow().is_some()
}

/// A method's own error, which must reach the caller typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CounterError {
    /// Subtracting would go below zero.
    #[error("cannot subtract {n} from {value}")]
    Underflow { value: u64, n: u64 },
}

/// The test process's side of coordination, callable from actors anywhere.
#[kt::actor]
pub struct Probe;

#[kt::actor]
impl Probe {
    pub fn new() -> Self {
        Probe
    }

    pub async fn wait_gate(&self, tag: String) {
        wait_gate(&tag).await;
    }

    pub fn gauge_add(&self, tag: String, delta: i64) -> usize {
        gauge_add(&tag, delta as isize)
    }

    pub fn record_stop(&self, tag: String, cause: DeathCause) {
        record_stop(&tag, cause);
    }
}

/// A probe for one test: many actors may wait on its gates at once. Handles that travel
/// to other processes do not keep an actor alive, so the probe is also kept here until
/// the test process ends.
pub async fn probe() -> ActorRef<Probe> {
    static KEEP: Mutex<Vec<ActorRef<Probe>>> = Mutex::new(Vec::new());
    let probe = Probe::spawn()
        .max_concurrency(1024)
        .on(Arc::new(kt::InProcess))
        .await
        .expect("spawn the probe");
    KEEP.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(probe.clone());
    probe
}

/// The workhorse test actor.
#[kt::actor]
pub struct Counter {
    value: u64,
    tag: String,
    probe: ActorRef<Probe>,
    /// What `record` saw, in the order it ran.
    log: Vec<u64>,
}

#[kt::actor]
impl Counter {
    pub fn new(start: u64, tag: String, probe: ActorRef<Probe>) -> Self {
        Counter {
            value: start,
            tag,
            probe,
            log: Vec::new(),
        }
    }

    /// An environment variable of the actor's process.
    pub fn env_var(&self, key: String) -> Option<String> {
        std::env::var(key).ok()
    }

    /// The id of the process the actor runs in.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    pub fn increment(&mut self) -> u64 {
        self.value += 1;
        self.value
    }

    /// Async and exclusive: yields in the middle, so interleaving would show.
    pub async fn add(&mut self, n: u64) -> u64 {
        let before = self.value;
        tokio::task::yield_now().await;
        self.value = before + n;
        self.value
    }

    pub fn get(&self) -> u64 {
        self.value
    }

    #[kt(idempotent)]
    pub fn get_again(&self) -> u64 {
        self.value
    }

    /// Appends `n` to the log (marked idempotent so that it is re-sent after a restart:
    /// the log shows the order the calls ran in).
    #[kt(idempotent)]
    pub fn record(&mut self, n: u64) -> Vec<u64> {
        self.log.push(n);
        self.log.clone()
    }

    /// The log of `record` calls.
    pub fn history(&self) -> Vec<u64> {
        self.log.clone()
    }

    pub fn checked_sub(&mut self, n: u64) -> Result<u64, CounterError> {
        self.value = self.value.checked_sub(n).ok_or(CounterError::Underflow {
            value: self.value,
            n,
        })?;
        Ok(self.value)
    }

    pub fn boom(&mut self, message: String) -> u64 {
        panic!("{message}")
    }

    /// Blocks the actor until the gate opens; the gauge of the same tag counts the waiters.
    pub async fn wait_for_gate(&mut self, gate: String) -> u64 {
        self.probe.gauge_add(gate.clone(), 1).await.expect("probe");
        self.probe.wait_gate(gate).await.expect("probe");
        self.value
    }

    pub fn stop_after_this(&mut self, ctx: &Context<Self>) -> u64 {
        ctx.stop();
        self.value
    }

    pub fn whoami(&self, ctx: &Context<Self>) -> (Option<String>, Option<GroupMember>, u32) {
        (
            ctx.name().map(String::from),
            ctx.group().copied(),
            ctx.restarts(),
        )
    }

    #[kt(on_stop)]
    async fn stopped(&mut self, cause: &DeathCause) {
        let _ = self
            .probe
            .record_stop(self.tag.clone(), cause.clone())
            .await;
    }
}

/// `&self` methods that hold until a gate opens, tracking how many run at once.
#[kt::actor]
pub struct Holder {
    tag: String,
    probe: ActorRef<Probe>,
    in_flight: AtomicUsize,
    max_seen: AtomicUsize,
}

#[kt::actor]
impl Holder {
    pub fn new(tag: String, probe: ActorRef<Probe>) -> Self {
        Holder {
            tag,
            probe,
            in_flight: AtomicUsize::new(0),
            max_seen: AtomicUsize::new(0),
        }
    }

    pub async fn hold(&self) -> usize {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        let tag = self.tag.clone();
        self.probe.gauge_add(tag.clone(), 1).await.expect("probe");
        self.probe.wait_gate(tag).await.expect("probe");
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        now
    }

    pub fn max_seen(&self) -> usize {
        self.max_seen.load(Ordering::SeqCst)
    }
}

/// A minimal actor built from plain arguments (no handles), for the encoded path.
#[kt::actor]
pub struct Accumulator {
    total: u64,
}

#[kt::actor]
impl Accumulator {
    pub fn new(start: u64) -> Self {
        Accumulator { total: start }
    }

    pub fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }

    /// The worker process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Prints a line on the worker's stdout.
    pub fn say(&self, line: String) {
        println!("{line}");
    }
}

/// Calls another actor through a handle it was given, to show handles travel.
#[kt::actor]
pub struct Relay;

#[kt::actor]
impl Relay {
    pub fn new() -> Self {
        Relay
    }

    /// Adds `n` on `target`, and says which node this process reached it at.
    pub async fn add_through(&self, target: ActorRef<Accumulator>, n: u64) -> (u64, String) {
        let node = kt::handle_wire::address_of(&target.raw().erase()).map(|a| a.node);
        let total = target.add(n).await.expect("the target answers");
        (total, node.unwrap_or_default())
    }

    /// Calls `target` at `gate` (it waits there) and once more behind that: how both
    /// calls ended.
    pub async fn two_calls_behind_a_gate(
        &self,
        target: ActorRef<Counter>,
        gate: String,
    ) -> Vec<Result<u64, Error>> {
        let waiting = target.wait_for_gate(gate);
        let queued = target.increment();
        vec![waiting.await, queued.await]
    }

    /// Sends `target` a call that waits at `gate`, then kills it through this process's
    /// own handle: a `Kill` frame behind the call, on the stream the calls travel on.
    pub async fn kill_behind_a_waiting_call(&self, target: ActorRef<Counter>, gate: String) {
        // A first call opens the stream.
        target.get().await.expect("the target answers");
        let waiting = target.wait_for_gate(gate);
        target.kill();
        drop(waiting);
    }
}

/// Reports its process's environment, to check what a backend gave it.
#[kt::actor]
pub struct EnvReader;

#[kt::actor]
impl EnvReader {
    pub fn new() -> Self {
        EnvReader
    }

    pub fn var(&self, key: String) -> Option<String> {
        std::env::var(key).ok()
    }

    /// The worker process's id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// A second actor type, for type mismatches.
#[kt::actor]
pub struct Other;

#[kt::actor]
impl Other {
    pub fn new() -> Self {
        Other
    }

    pub fn ping(&self) -> String {
        "pong".into()
    }
}

/// An actor whose async constructor can fail.
#[kt::actor]
pub struct Fragile {
    label: String,
}

#[kt::actor]
impl Fragile {
    pub async fn new(label: String, fail: bool) -> Result<Self, String> {
        tokio::task::yield_now().await;
        if fail {
            Err(format!("refusing to build '{label}'"))
        } else {
            Ok(Fragile { label })
        }
    }

    pub fn label_text(&self) -> String {
        self.label.clone()
    }
}

/// Placements under test, by name.
pub fn placement(backend: &str) -> Arc<dyn kt::Placement> {
    match backend {
        "in_process" => Arc::new(kt::InProcess),
        "loopback" => Arc::new(kt::Loopback),
        "local_process" => Arc::new(kt::LocalProcess::new()),
        "kubernetes" => Arc::new(
            KUBERNETES
                .get()
                .expect("the Kubernetes placement is set up first")
                .clone(),
        ),
        other => panic!("unknown backend {other}"),
    }
}

/// The Kubernetes placement of a test binary that runs actors on the emulator.
pub static KUBERNETES: std::sync::OnceLock<kt::Kubernetes> = std::sync::OnceLock::new();

/// The API-server emulator and this driver's session on it, one per test binary.
pub struct Cluster {
    /// The emulator (its failure injection).
    pub emulator: kt_kube_emulator::Emulator,
    /// A kubeconfig for it.
    pub kubeconfig: std::path::PathBuf,
    /// This driver's placement on it.
    pub k8s: kt::Kubernetes,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A kube client of the emulator, as any other user of the cluster has one.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

/// A Kubernetes placement on the emulator, pods running this test binary; this driver's
/// node listens on `driver_address` (the address pods reach this machine at).
pub async fn kubernetes_from(
    kubeconfig: &std::path::Path,
    reach: kt::Reach,
    driver_address: std::net::IpAddr,
) -> kt::Kubernetes {
    kt::Kubernetes::builder()
        .kubeconfig(kubeconfig)
        .image("kt-tests:local")
        .this_binary()
        .expect("this binary")
        .reach(reach)
        .driver_address(driver_address)
        .quiet()
        .connect()
        .await
        .expect("connects to the emulator")
}

/// How many nodes the tests' emulated cluster has: two, so that placement groups that
/// spread really spread and calls between pods really cross from one node to another.
pub const NODES: usize = 2;

/// Starts the emulator with [`NODES`] nodes, each node's pods in a network namespace of
/// that node's own, so that pods of different nodes, and this driver, are different hosts
/// as on a cluster. Where that cannot be made (not root), it says so and shares this
/// machine's loopback instead, unless `KT_EMULATOR_NETWORK=namespace` (CI) makes that an
/// error; `KT_EMULATOR_NETWORK=loopback` asks for loopback outright.
async fn start_emulator() -> kt_kube_emulator::Emulator {
    use kt_kube_emulator::{Emulator, EmulatorConfig, EmulatorError, PodNetwork};
    let start = |network| Emulator::start(EmulatorConfig::default().nodes(NODES).network(network));
    match std::env::var("KT_EMULATOR_NETWORK").as_deref() {
        Ok("loopback") => start(PodNetwork::SharedLoopback).await,
        Ok("namespace") => start(PodNetwork::NodeNamespace).await,
        Err(_) => match start(PodNetwork::NodeNamespace).await {
            Err(EmulatorError::Network(error)) => {
                eprintln!(
                    "kt tests: {error}\nkt tests: pods share this machine's loopback instead \
                     (KT_EMULATOR_NETWORK=namespace makes this an error)"
                );
                start(PodNetwork::SharedLoopback).await
            }
            started => started,
        },
        Ok(other) => panic!("KT_EMULATOR_NETWORK={other:?}: use loopback or namespace"),
    }
    .expect("the emulator starts")
}

/// Starts the emulator and this driver's session once per binary, before any actor (the
/// node's CA is the cluster's); `kt::get_actor` and `placement("kubernetes")` use it.
pub async fn cluster() -> &'static Cluster {
    static CLUSTER: tokio::sync::OnceCell<Cluster> = tokio::sync::OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let emulator = start_emulator().await;
            let dir = tempfile::tempdir().expect("a temp dir");
            let kubeconfig = dir.path().join("kubeconfig");
            emulator.write_kubeconfig(&kubeconfig).expect("kubeconfig");
            let driver = emulator.host_address().into();
            let k8s = kubernetes_from(&kubeconfig, kt::Reach::detect(), driver).await;
            kt::placement::set_default_placement(Arc::new(k8s.clone()));
            let _ = KUBERNETES.set(k8s.clone());
            Cluster {
                emulator,
                kubeconfig,
                k8s,
                _dir: dir,
            }
        })
        .await
}

/// Where a `Counter` runs: its worker process, and its pod on Kubernetes.
pub struct WorkerHost {
    pub pid: u32,
    pub pod: Option<String>,
}

/// Asks the counter where it runs (before it is made busy: the answer is a call).
pub async fn host_of(counter: &ActorRef<Counter>) -> WorkerHost {
    WorkerHost {
        pid: counter.pid().await.expect("pid"),
        pod: counter.env_var("POD_NAME".into()).await.expect("env"),
    }
}

/// Kills the process hosting an actor the way it dies on `backend` — SIGKILL for a local
/// process, an OOM kill injected through the emulator for a pod — and returns the cause
/// the actor's callers see.
pub async fn kill_host(backend: &str, host: &WorkerHost) -> DeathCause {
    match backend {
        "local_process" => {
            // SAFETY: sends SIGKILL to a worker process this test spawned.
            assert_eq!(unsafe { libc::kill(host.pid as i32, libc::SIGKILL) }, 0);
            DeathCause::Signaled {
                signal: libc::SIGKILL,
            }
        }
        "kubernetes" => {
            let c = cluster().await;
            let pod = host.pod.as_deref().expect("a pod actor knows its pod");
            c.emulator
                .oom_kill(c.k8s.namespace(), pod)
                .expect("OOM kill");
            DeathCause::OomKilled
        }
        other => panic!("{other} hosts no worker process"),
    }
}

/// Answers with large payloads, for the message-size paths.
#[kt::actor]
pub struct Blobs;

#[kt::actor]
impl Blobs {
    pub fn new() -> Self {
        Blobs
    }

    /// `len` bytes counting up from `seed` (wrapping), so that any reordering or loss
    /// inside the payload shows.
    pub fn blob(&self, len: usize, seed: u8) -> bytes::Bytes {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    /// The length of what it was sent.
    pub fn measure(&self, payload: bytes::Bytes) -> usize {
        payload.len()
    }
}

/// Resolves when process `pid` has exited, without polling: a pidfd becomes readable.
pub async fn exited(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return; // ESRCH: already gone.
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd takes ownership of the pidfd and closes it when dropped.
    let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.expect("register pidfd");
    let _ = fd.readable().await.expect("pidfd readable");
}
