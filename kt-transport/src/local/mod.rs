//! [`LocalProcess`]: kt's embedded default placement — each actor in a child process of
//! the current binary, started in worker mode, reached over QUIC on loopback.
//!
//! The driver learns of a child's death from the child itself (tokio reaps it on
//! SIGCHLD), not from a timeout, so waiting callers get `ActorDied` with the exit code
//! or signal within milliseconds of a `kill -9`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kt_core::backend::{EncodedRoute, OwnerGuard, Placed};
use kt_core::handle_wire::HandleAddress;
use kt_core::registry::ActorType;
use kt_core::{
    Compute, DeathCause, ErasedActor, Error, Lifetime, Placement, SpawnOptions, SpawnRequest,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

use crate::node::{HelloStream, Node, RemoteRoute};
use crate::wire::directory::{NameEntry, Names};
use crate::wire::frame::PROTOCOL_VERSION;
use crate::worker::supervision::{StartIncarnation, supervised};
use crate::worker::{DeathReporter, WORKER_ENV, WorkerConfig, encode_config, link, worker_args};
use resources::{Grant, Ledger};

pub mod resources;

/// How long a worker may take to start and report in.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs each actor in a child process of the current binary, reserving the CPUs and
/// GPUs its `Compute` asks for from this machine's [`Ledger`].
#[derive(Debug, Clone)]
pub struct LocalProcess {
    ledger: Arc<Ledger>,
}

impl LocalProcess {
    /// Places actors on this machine's CPUs and GPUs (shared by every `LocalProcess::new()`).
    pub fn new() -> Self {
        static MACHINE: OnceLock<Arc<Ledger>> = OnceLock::new();
        LocalProcess {
            ledger: MACHINE.get_or_init(Ledger::detect).clone(),
        }
    }

    /// Places actors on a budget of its own: `cpus` CPUs and GPUs `0..gpus`.
    pub fn with_resources(cpus: f64, gpus: u32) -> Self {
        LocalProcess {
            ledger: Ledger::new(cpus, gpus),
        }
    }
}

impl Default for LocalProcess {
    fn default() -> Self {
        LocalProcess::new()
    }
}

impl Placement for LocalProcess {
    fn name(&self) -> &str {
        "local-process"
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'static, kt_core::Result<Placed>> {
        Box::pin(spawn_worker(self.ledger.clone(), request))
    }

    fn lookup(&self, name: &str) -> BoxFuture<'static, kt_core::Result<Option<Placed>>> {
        Box::pin(lookup(name.to_string()))
    }
}

/// A local process cannot honour what only a pod can (an image, node selection, volumes,
/// ...): a spawn that asks for it fails, naming each knob, instead of running without it.
fn reject_pod_only(compute: &Compute) -> kt_core::Result<()> {
    let pod_only = compute.pod_only_settings();
    if pod_only.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidOptions {
        problems: pod_only
            .into_iter()
            .map(|knob| {
                format!(
                    "`Compute::{knob}` applies to pods only, and this actor would run in a                      local process: build the Compute for the placement you spawn on (or                      leave `{knob}` out when running locally)"
                )
            })
            .collect(),
    })
}

fn start_failed(type_name: &str, message: impl std::fmt::Display) -> Error {
    Error::WorkerStartFailed {
        type_name: type_name.to_string(),
        message: message.to_string(),
    }
}

async fn spawn_worker(ledger: Arc<Ledger>, request: SpawnRequest) -> kt_core::Result<Placed> {
    request.options.validate()?;
    reject_pod_only(&request.options.compute)?;
    let recipe = Arc::new(Recipe {
        ledger,
        actor_type: request.actor_type,
        args: Bytes::from(request.encoded_args()?.to_vec()),
        options: request.options,
    });
    let restarts = recipe.options.max_restarts;
    let name = recipe.options.name.clone();
    // Claim the name machine-wide before starting anything (rule N1).
    let names = match &name {
        Some(name) => {
            let names = Names::open()?;
            let claimant = NameEntry {
                pid: std::process::id(),
                address: None,
            };
            names.claim(name, &claimant)?;
            Some((names, name.clone()))
        }
        None => None,
    };
    let first = match start_incarnation(recipe.clone(), restarts).await {
        Ok(first) => first,
        Err(error) => {
            if let Some((names, name)) = names {
                names.release(&name, std::process::id());
            }
            return Err(error);
        }
    };
    let detached = recipe.options.lifetime == Lifetime::Detached;
    let start: StartIncarnation = {
        let recipe = recipe.clone();
        Arc::new(move |left| Box::pin(start_incarnation(recipe.clone(), left)))
    };
    let actor = supervised(first, recipe.actor_type, restarts, detached, start)?;
    if let Some(name) = name {
        spawned_here().insert(name, SpawnedHere::of(&actor));
    }
    Ok(Placed::elsewhere(actor))
}

/// A named actor this driver spawned: found by `get_actor` through the driver's own
/// route (which watches the process) rather than through the name directory.
struct SpawnedHere {
    route: SpawnedRoute,
    owner: Option<std::sync::Weak<OwnerGuard>>,
}

enum SpawnedRoute {
    /// An owned actor: its handles decide its lifetime, not this directory.
    Owned(std::sync::Weak<dyn EncodedRoute>),
    /// A detached actor: the driver keeps watching it while the driver lives.
    Detached(Arc<dyn EncodedRoute>),
}

impl SpawnedHere {
    fn of(actor: &ErasedActor) -> Self {
        let route = match actor.owner() {
            Some(_) => SpawnedRoute::Owned(Arc::downgrade(actor.route())),
            None => SpawnedRoute::Detached(actor.route().clone()),
        };
        SpawnedHere {
            route,
            owner: actor.owner().map(Arc::downgrade),
        }
    }

    /// A handle to the actor if it is still alive (and, for an owned actor, still owned).
    fn handle(&self) -> Lookup {
        let route = match &self.route {
            SpawnedRoute::Owned(weak) => weak.upgrade(),
            SpawnedRoute::Detached(route) => Some(route.clone()),
        };
        let Some(route) = route else {
            return Lookup::Gone(None);
        };
        if !route.is_alive() {
            return Lookup::Gone(route.address());
        }
        let owner = match &self.owner {
            None => None,
            Some(weak) => match weak.upgrade() {
                Some(owner) => Some(owner),
                // Its owners are all gone: it is stopping.
                None => return Lookup::Gone(route.address()),
            },
        };
        Lookup::Found(ErasedActor::new(route, owner))
    }
}

enum Lookup {
    Found(ErasedActor),
    /// Dead, last seen at this address.
    Gone(Option<HandleAddress>),
}

fn spawned_here() -> std::sync::MutexGuard<'static, HashMap<String, SpawnedHere>> {
    static SPAWNED: OnceLock<Mutex<HashMap<String, SpawnedHere>>> = OnceLock::new();
    SPAWNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Finds a named local-process actor: one this driver spawned, or one another driver
/// of this user spawned on this machine (through the name directory).
async fn lookup(name: String) -> kt_core::Result<Option<Placed>> {
    let last_seen = {
        let mut spawned = spawned_here();
        match spawned.get(&name).map(SpawnedHere::handle) {
            Some(Lookup::Found(actor)) => return Ok(Some(Placed::elsewhere(actor))),
            Some(Lookup::Gone(address)) => {
                spawned.remove(&name);
                address
            }
            None => None,
        }
    };
    let Some(entry) = Names::open()?.lookup(&name) else {
        return Ok(None);
    };
    let Some(address) = entry.address else {
        // Claimed, still starting.
        return Ok(None);
    };
    if last_seen.as_ref() == Some(&address) {
        // The entry of the actor we just saw die, not yet cleaned up.
        return Ok(None);
    }
    let actor = Node::global()?.import(address)?;
    // A handle of ours may already have seen it die (its process is still exiting).
    Ok(actor.route().is_alive().then(|| Placed::elsewhere(actor)))
}

/// What it takes to start (and restart) one actor's worker process.
struct Recipe {
    ledger: Arc<Ledger>,
    actor_type: ActorType,
    args: Bytes,
    options: SpawnOptions,
}

/// Starts one worker process for the recipe's actor, with `restarts` left for panics,
/// and resolves once the actor is built and reachable.
async fn start_incarnation(
    recipe: Arc<Recipe>,
    restarts: u32,
) -> kt_core::Result<Arc<RemoteRoute>> {
    let type_name = recipe.actor_type.type_name;
    let mut options = recipe.options.clone();
    options.max_restarts = restarts;
    let grant = recipe
        .ledger
        .reserve(type_name, &options.compute, options.wait_for_resources)
        .await?;
    let node = Node::global()?;
    let Some(ca) = node.ca() else {
        return Err(start_failed(
            type_name,
            "only the driver process can start workers (actors cannot spawn yet)",
        ));
    };
    static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let config = WorkerConfig {
        version: PROTOCOL_VERSION,
        token,
        driver: Some(node.address().to_string()),
        listen_port: 0,
        identity: Some(ca.issue(type_name)?),
        type_name: type_name.to_string(),
        args: recipe.args.clone(),
        options,
        inherited: crate::worker::inherit::inherited().await?,
    };
    let detached = config.options.lifetime == Lifetime::Detached;
    let hello = node.control().expect_hello(token);
    // The child is reaped, and its output read, by the node's long-lived runtime.
    let runtime = node.runtime.clone();
    let mut child = {
        let _in_runtime = runtime.enter();
        start_child(type_name, detached, &config.options.compute, &grant)?
    };
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| start_failed(type_name, "no stdin pipe"))?;
    let written = async {
        stdin
            .write_all(&encode_config(&config)?)
            .await
            .map_err(|e| start_failed(type_name, e))?;
        stdin.flush().await.map_err(|e| start_failed(type_name, e))
    };
    if let Err(error) = written.await {
        node.control().forget_hello(token);
        let _ = child.start_kill();
        return Err(error);
    }
    let name = config
        .options
        .name
        .as_deref()
        .unwrap_or(short_name(type_name));
    forward_output(&runtime, &mut child, name);

    let mut hello = hello;
    let reported = tokio::select! {
        biased;
        hello = &mut hello => hello.map_err(|_| start_failed(type_name, "the driver stopped waiting")),
        status = child.wait() => {
            // A report may still be in flight from a worker that exited right after it.
            match tokio::time::timeout(Duration::from_millis(500), &mut hello).await {
                Ok(Ok(hello)) => Ok(hello),
                _ => Err(start_failed(type_name, match status {
                    Ok(status) => format!("the worker exited ({status}) before reporting in; its output is above"),
                    Err(e) => e.to_string(),
                })),
            }
        }
        () = tokio::time::sleep(START_TIMEOUT) => Err(start_failed(type_name, "the worker did not report in within 60 s")),
    };
    let HelloStream {
        result,
        control,
        events,
    } = match reported {
        Ok(hello) => hello,
        Err(error) => {
            node.control().forget_hello(token);
            let _ = child.start_kill();
            return Err(error);
        }
    };
    let address = result?;
    let worker_node = address.node.parse().ok();
    let pid = child.id();
    let killer = Box::new(move || {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid this process spawned and has not reaped yet
            // (the watcher owns the Child until it exits); it only sends a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let published = match (&config.options.name, pid) {
        (Some(name), Some(pid)) => {
            let names = Names::open()?;
            let entry = NameEntry {
                pid,
                address: Some(address.clone()),
            };
            names.publish(name, &entry)?;
            Some((names, name.clone(), pid))
        }
        _ => None,
    };
    let (route, death) = link(&node, worker_node, address, control, events, Some(killer));
    route.pace_to(
        recipe.options.mailbox_capacity,
        recipe.options.max_concurrency,
    );
    runtime.spawn(async move {
        watch_child(child, stdin, grant, death).await;
        if let Some((names, name, pid)) = published {
            names.release(&name, pid);
        }
    });
    Ok(route)
}

inventory::submit! {
    kt_core::placement::DefaultPlacementRegistration {
        placement: || Arc::new(LocalProcess::new())
    }
}

fn short_name(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

fn start_child(
    type_name: &str,
    detached: bool,
    compute: &Compute,
    grant: &Grant,
) -> kt_core::Result<Child> {
    let exe = std::env::current_exe()
        .map_err(|e| start_failed(type_name, format!("cannot find this binary: {e}")))?;
    let mut command = Command::new(exe);
    command
        .args(worker_args())
        .envs(&compute.env)
        .env("CUDA_VISIBLE_DEVICES", grant.cuda_visible_devices())
        .env(WORKER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if detached {
        // Its own process group: a Ctrl-C to the driver's terminal does not reach it.
        command.process_group(0);
    }
    command
        .spawn()
        .map_err(|e| start_failed(type_name, format!("cannot start a worker process: {e}")))
}

/// Prints the worker's output lines prefixed with the actor's name and pid, as Ray does.
fn forward_output(runtime: &tokio::runtime::Handle, child: &mut Child, name: &str) {
    let prefix = format!("({name} pid={})", child.id().unwrap_or(0));
    if let Some(stdout) = child.stdout.take() {
        let prefix = prefix.clone();
        runtime.spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{prefix} {line}");
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        runtime.spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{prefix} {line}");
            }
        });
    }
}

/// Waits for the worker process to end and fails its waiting calls with the reason.
/// Holding `stdin` open until then is what lets the worker notice a vanished driver.
async fn watch_child(mut child: Child, stdin: ChildStdin, grant: Grant, death: DeathReporter) {
    let cause = match child.wait().await {
        Ok(status) => exit_cause(status),
        Err(error) => DeathCause::ConnectionLost {
            message: format!("lost track of the worker process: {error}"),
        },
    };
    drop(stdin);
    // The process is gone: its CPUs and GPUs are free for the next spawn.
    drop(grant);
    death.died(cause).await;
}

fn exit_cause(status: std::process::ExitStatus) -> DeathCause {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(signal)) => DeathCause::Signaled { signal },
        (Some(code), None) => DeathCause::Exited { code },
        (None, None) => DeathCause::Exited { code: -1 },
    }
}
