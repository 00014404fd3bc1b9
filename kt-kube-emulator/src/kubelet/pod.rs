//! One pod's task: prepares volumes and environments, runs a task per container, turns their
//! reports into the pod's status (phase, conditions, container statuses), and carries out
//! deletion and injected failures.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::container::{self, Exit, Prepared, Probe, RestartPolicy, Update};
use super::env::{self, PodFacts};
use super::process::OnNode;
use super::volumes::{self, NotReady};
use super::{PodCommand, PodRuntime};
use crate::cluster::{Cluster, DeleteOptions};
use crate::conditions;
use crate::events::{self, Source};
use crate::time;

/// What the kubelet says when it evicts a pod under memory pressure.
const EVICTION_MESSAGE: &str =
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. ";

/// The kubelet's view of one container.
#[derive(Debug, Clone)]
struct ContainerModel {
    name: String,
    image: String,
    state: Value,
    last_state: Value,
    ready: bool,
    running: bool,
    /// Start attempts so far (failed starts included); restartCount is one less.
    attempts: u32,
    last_terminated: Option<Value>,
    pgid: Option<i32>,
    done: bool,
    last_exit_code: Option<i32>,
    /// The next exit was caused by an injected OOM kill.
    oom_pending: bool,
}

impl ContainerModel {
    fn new(c: &Value) -> Self {
        let s = |f: &str| {
            c.get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ContainerModel {
            name: s("name"),
            image: s("image"),
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            last_state: json!({}),
            ready: false,
            running: false,
            attempts: 0,
            last_terminated: None,
            pgid: None,
            done: false,
            last_exit_code: None,
            oom_pending: false,
        }
    }

    fn ever_started(&self) -> bool {
        self.attempts > 0
    }

    fn new_attempt(&mut self) {
        self.attempts += 1;
        if let Some(t) = &self.last_terminated {
            self.last_state = json!({"terminated": t});
        }
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Waiting { reason, message } => {
                self.state = json!({"waiting": {"reason": reason, "message": message}});
                self.running = false;
            }
            Update::Started { pgid, at } => {
                self.new_attempt();
                self.running = true;
                self.pgid = Some(pgid);
                self.state = json!({"running": {"startedAt": at}});
            }
            Update::Ready(ready) => self.ready = ready && self.running,
            Update::Exited(exit) => self.exited(exit),
            Update::Done => self.done = true,
        }
    }

    fn exited(&mut self, exit: Exit) {
        let Exit {
            code,
            signal,
            started_at,
            finished_at,
            start_error,
        } = exit;
        let reason = if start_error.is_some() {
            "StartError"
        } else if std::mem::take(&mut self.oom_pending) {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let mut terminated = json!({
            "exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at,
        });
        if let Some(sig) = signal {
            terminated["signal"] = json!(sig);
        }
        if start_error.is_some() {
            self.new_attempt();
        } else if let Some(pgid) = self.pgid {
            terminated["containerID"] = json!(format!("kt-emulator://{pgid}"));
        }
        if let Some(message) = start_error {
            terminated["message"] = json!(message);
        }
        self.state = json!({"terminated": terminated.clone()});
        self.last_terminated = Some(terminated);
        self.running = false;
        self.ready = false;
        self.last_exit_code = Some(code);
    }

    fn status(&self) -> Value {
        let mut s = json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.running,
            "restartCount": self.attempts.saturating_sub(1),
            "state": self.state,
            "lastState": self.last_state,
        });
        if let Some(pgid) = self.pgid {
            s["containerID"] = json!(format!("kt-emulator://{pgid}"));
        }
        s
    }
}

/// The pod's task.
struct Worker {
    cluster: Arc<Cluster>,
    runtime: Arc<PodRuntime>,
    pod: Value,
    /// Init containers first (the first `n_init`), then the regular ones.
    containers: Vec<ContainerModel>,
    n_init: usize,
    policy: RestartPolicy,
    stop: watch::Sender<Option<Duration>>,
    evicted: bool,
    disruption: Option<(&'static str, String)>,
    last_phase: String,
    /// Image-pull events already recorded (container index, reason): recorded once, not
    /// on every retry.
    pull_events: HashSet<(usize, &'static str)>,
}

fn restart_policy(pod: &Value) -> RestartPolicy {
    match pod.pointer("/spec/restartPolicy").and_then(Value::as_str) {
        Some("Never") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        _ => RestartPolicy::Always,
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn probe_port(container: &Value, port: Option<&Value>) -> Option<u16> {
    match port? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => container
            .get("ports")?
            .as_array()?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
            .get("containerPort")?
            .as_u64()
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

fn probe_of(container: &Value) -> Option<Probe> {
    let probe = container.get("readinessProbe")?;
    if let Some(cmd) = probe.pointer("/exec/command").and_then(Value::as_array) {
        return Some(Probe::Exec(
            cmd.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ));
    }
    if let Some(tcp) = probe.get("tcpSocket") {
        return Some(
            probe_port(container, tcp.get("port")).map_or(Probe::Exec(Vec::new()), Probe::Tcp),
        );
    }
    if let Some(http) = probe.get("httpGet") {
        let path = http
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string();
        return Some(
            probe_port(container, http.get("port"))
                .map_or(Probe::Exec(Vec::new()), |p| Probe::Http(p, path)),
        );
    }
    None
}

impl Worker {
    fn init(&self) -> &[ContainerModel] {
        &self.containers[..self.n_init]
    }

    fn main(&self) -> &[ContainerModel] {
        &self.containers[self.n_init..]
    }

    fn initialized(&self) -> bool {
        self.init()
            .iter()
            .all(|c| c.done && c.last_exit_code == Some(0))
    }

    fn phase(&self) -> &'static str {
        // An evicted pod fails once its processes are gone, as the kubelet reports it.
        if self.evicted && self.containers.iter().all(|c| !c.running) {
            return "Failed";
        }
        if self
            .init()
            .iter()
            .any(|c| c.done && c.last_exit_code.is_some_and(|code| code != 0))
        {
            return "Failed";
        }
        if !self.initialized() {
            return "Pending";
        }
        if self.main().iter().all(|c| c.done && c.ever_started()) {
            return if self.main().iter().all(|c| c.last_exit_code == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if self.main().iter().any(|c| !c.ever_started()) {
            return "Pending";
        }
        "Running"
    }

    /// Writes the pod's status from the model (no event if nothing changed).
    fn publish(&mut self) {
        let phase = self.phase();
        let all_ready = self.main().iter().all(|c| c.ready);
        let unready: Vec<&str> = self
            .main()
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
        let terminal = phase == "Succeeded" || phase == "Failed";
        let (ready_reason, ready_message) = if all_ready {
            (None, None)
        } else if terminal {
            (Some("PodCompleted"), None)
        } else {
            (Some("ContainersNotReady"), Some(unready_message.as_str()))
        };
        let any_started = self.containers.iter().any(ContainerModel::ever_started);
        let incomplete: Vec<&str> = self
            .init()
            .iter()
            .filter(|c| !(c.done && c.last_exit_code == Some(0)))
            .map(|c| c.name.as_str())
            .collect();
        let init_message = format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        );
        let mut ours = vec![
            conditions::condition(
                "PodReadyToStartContainers",
                any_started || !terminal,
                None,
                None,
            ),
            match self.initialized() {
                true => conditions::condition("Initialized", true, None, None),
                false => conditions::condition(
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized"),
                    Some(&init_message),
                ),
            },
            conditions::condition("ContainersReady", all_ready, ready_reason, ready_message),
            conditions::condition("Ready", all_ready, ready_reason, ready_message),
        ];
        if let Some((reason, message)) = &self.disruption {
            ours.push(conditions::condition(
                "DisruptionTarget",
                true,
                Some(reason),
                Some(message),
            ));
        }
        let statuses: Vec<Value> = self.main().iter().map(ContainerModel::status).collect();
        let init_statuses: Vec<Value> = self.init().iter().map(ContainerModel::status).collect();
        let evicted = self.evicted && phase == "Failed";
        let key = self.runtime.key.clone();
        self.cluster
            .write_status(&key, Some(&self.runtime.uid), |status| {
                status["phase"] = json!(phase);
                status["conditions"] = conditions::merge(status.get("conditions"), ours);
                status["containerStatuses"] = json!(statuses);
                if !init_statuses.is_empty() {
                    status["initContainerStatuses"] = json!(init_statuses);
                }
                if status.get("startTime").is_none() {
                    status["startTime"] = json!(time::now());
                }
                if evicted {
                    status["reason"] = json!("Evicted");
                    status["message"] = json!(EVICTION_MESSAGE);
                }
            });
        if terminal && self.last_phase != phase {
            // A finished pod no longer holds its resources.
            self.cluster.scheduler_wake.notify_one();
        }
        self.last_phase = phase.to_string();
    }

    /// Resolves volumes and every container's command line and environment.
    fn prepare(&self, root: &std::path::Path) -> Result<Vec<Prepared>, NotReady> {
        let volumes = volumes::materialize(&self.cluster, &self.pod, root)?;
        let status = |f: &str| {
            self.pod
                .pointer(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let facts = PodFacts {
            pod_ip: status("/status/podIP"),
            host_ip: status("/status/hostIP"),
            node_name: status("/spec/nodeName"),
        };
        let mut out = Vec::new();
        for c in all_containers(&self.pod) {
            let mounts = env::mounts(c, &volumes);
            let vars = env::resolve(&self.cluster, &self.pod, c, &facts, &mounts)?;
            let lookup: HashMap<String, String> = vars.iter().cloned().collect();
            let strings = |f: &str| -> Vec<String> {
                c.get(f)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|s| env::expand(s, &lookup))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut argv = strings("command");
            argv.extend(strings("args"));
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push(Prepared {
                image: c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                argv,
                env: vars,
                working_dir: env::working_dir(c, &mounts),
                probe: probe_of(c),
                name,
            });
        }
        Ok(out)
    }

    fn event(&self, container: Option<&str>, warning: bool, reason: &str, message: &str) {
        events::record(
            &self.cluster,
            &self.pod,
            container,
            warning,
            reason,
            message,
            Source::Kubelet,
        );
    }

    /// Records the events the kubelet would for this container update.
    fn note(&mut self, index: usize, update: &Update) {
        let Some(c) = self.containers.get(index) else {
            return;
        };
        let (name, image) = (c.name.clone(), c.image.clone());
        let label = format!(
            "{}_{}({})",
            self.runtime.key.name, self.runtime.key.namespace, self.runtime.uid
        );
        match update {
            Update::Started { .. } => {
                let pulled = format!("Container image \"{image}\" already present on machine");
                self.event(Some(&name), false, "Pulled", &pulled);
                self.event(
                    Some(&name),
                    false,
                    "Created",
                    &format!("Created container: {name}"),
                );
                self.event(
                    Some(&name),
                    false,
                    "Started",
                    &format!("Started container {name}"),
                );
            }
            Update::Waiting { reason, message }
                if reason == "ErrImagePull" && self.pull_events.insert((index, "ErrImagePull")) =>
            {
                self.event(
                    Some(&name),
                    true,
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {message}"),
                );
                self.event(Some(&name), true, "Failed", "Error: ErrImagePull");
            }
            Update::Waiting { reason, .. }
                if reason == "ImagePullBackOff"
                    && self.pull_events.insert((index, "ImagePullBackOff")) =>
            {
                self.event(
                    Some(&name),
                    false,
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                );
                self.event(Some(&name), true, "Failed", "Error: ImagePullBackOff");
            }
            Update::Waiting { reason, .. } if reason == "CrashLoopBackOff" => {
                let message = format!("Back-off restarting failed container {name} in pod {label}");
                self.event(Some(&name), true, "BackOff", &message);
            }
            _ => {}
        }
    }

    /// Carries out a deletion or an injected failure.
    fn command(&mut self, command: PodCommand) {
        match command {
            PodCommand::Terminate(grace) => {
                for c in self.containers.iter().filter(|c| c.running) {
                    self.event(
                        Some(&c.name),
                        false,
                        "Killing",
                        &format!("Stopping container {}", c.name),
                    );
                }
                self.stop.send_replace(Some(grace));
            }
            PodCommand::OomKill(name) => {
                let target = self
                    .containers
                    .iter_mut()
                    .find(|c| c.running && name.as_ref().is_none_or(|n| *n == c.name));
                if let Some(c) = target
                    && let Some(pgid) = c.pgid
                {
                    c.oom_pending = true;
                    super::process::kill_group(pgid, libc::SIGKILL);
                }
            }
            PodCommand::Evict => {
                self.evicted = true;
                self.event(None, true, "Evicted", EVICTION_MESSAGE);
                self.disruption = Some(("TerminationByKubelet", EVICTION_MESSAGE.into()));
                self.publish();
                self.stop.send_replace(Some(Duration::ZERO));
            }
            PodCommand::Preempt => {
                let node = self
                    .pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let message = format!("Preempted by a higher priority pod on node {node}");
                self.event(None, false, "Preempted", &message);
                self.disruption = Some((
                    "PreemptionByScheduler",
                    "Kubernetes default scheduler: preempting to accommodate a higher priority pod"
                        .into(),
                ));
                self.publish();
                // The delete comes back to this task as a Terminate command.
                let _ = self
                    .cluster
                    .delete(&self.runtime.key, &DeleteOptions::default());
            }
        }
    }
}

/// Runs the pod until all of its containers are done for good.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    runtime: Arc<PodRuntime>,
    pod: Value,
    mut control: mpsc::UnboundedReceiver<PodCommand>,
) {
    let containers: Vec<ContainerModel> = all_containers(&pod).map(ContainerModel::new).collect();
    let n_init = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut worker = Worker {
        policy: restart_policy(&pod),
        cluster: cluster.clone(),
        runtime: runtime.clone(),
        pod,
        containers,
        n_init,
        stop: watch::channel(None).0,
        evicted: false,
        disruption: None,
        last_phase: String::new(),
        pull_events: HashSet::new(),
    };
    worker.publish();
    let root = match tempfile::Builder::new()
        .prefix("kt-emulator-pod-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            for c in &mut worker.containers {
                c.apply(Update::Waiting {
                    reason: "ContainerCreating".into(),
                    message: e.to_string(),
                });
            }
            worker.publish();
            return finish(&worker);
        }
    };
    // Wait, as the kubelet does, until referenced secrets and config maps exist.
    let mut changes = cluster.store.subscribe();
    let prepared = loop {
        match worker.prepare(root.path()) {
            Ok(prepared) => break Some(prepared),
            Err(not_ready) => {
                for c in &mut worker.containers {
                    c.apply(Update::Waiting {
                        reason: not_ready.reason.into(),
                        message: not_ready.message.clone(),
                    });
                }
                worker.publish();
                tokio::select! {
                    _ = changes.changed() => {}
                    command = control.recv() => match command {
                        Some(PodCommand::Terminate(_)) | None => break None,
                        Some(PodCommand::Evict) => { worker.command(PodCommand::Evict); break None; }
                        Some(other) => worker.command(other),
                    },
                }
            }
        }
    };
    if let Some(prepared) = prepared {
        let pod_ip: Ipv4Addr = worker
            .pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(Ipv4Addr::LOCALHOST);
        let n_init = worker.n_init;
        for c in worker
            .containers
            .iter_mut()
            .skip(n_init)
            .filter(|_| n_init > 0)
        {
            c.apply(Update::Waiting {
                reason: "PodInitializing".into(),
                message: String::new(),
            });
        }
        let (updates, mut updates_rx) = mpsc::unbounded_channel();
        let node = worker
            .pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let launcher = Launcher {
            prepared,
            pod_ip,
            processes: cluster
                .kubelet
                .processes
                .on_node(cluster.isolation_of(node)),
            label: format!(
                "{}_{}({})",
                runtime.key.name, runtime.key.namespace, runtime.uid
            ),
            updates,
        };
        // Init containers run one at a time, in order; the regular ones start together
        // once every init container has succeeded.
        let mut live = if worker.n_init > 0 {
            launcher.spawn(&worker, 0..1)
        } else {
            launcher.spawn(&worker, 0..worker.containers.len())
        };
        let mut control_open = true;
        while live > 0 {
            tokio::select! {
                update = updates_rx.recv() => {
                    let Some(first) = update else { break };
                    let mut pending = vec![first];
                    // Drain what is already queued so that one status write covers it.
                    while let Ok(next) = updates_rx.try_recv() {
                        pending.push(next);
                    }
                    for (index, update) in pending {
                        let done = matches!(update, Update::Done);
                        worker.note(index, &update);
                        if let Some(c) = worker.containers.get_mut(index) {
                            c.apply(update);
                        }
                        if !done {
                            continue;
                        }
                        live -= 1;
                        let stopping = worker.stop.borrow().is_some();
                        let succeeded = worker.containers.get(index).is_some_and(|c| c.last_exit_code == Some(0));
                        if index < worker.n_init && succeeded && !stopping {
                            let next = index + 1;
                            let range = if next < worker.n_init { next..next + 1 } else { next..worker.containers.len() };
                            live += launcher.spawn(&worker, range);
                        }
                    }
                    worker.publish();
                }
                command = control.recv(), if control_open => match command {
                    Some(command) => worker.command(command),
                    None => {
                        control_open = false;
                        worker.stop.send_replace(Some(Duration::ZERO));
                    }
                },
            }
        }
    }
    worker.publish();
    drop(root);
    finish(&worker);
}

/// Init containers, then regular containers, as in the pod spec.
fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/spec/initContainers", "/spec/containers"]
        .into_iter()
        .flat_map(move |p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
}

/// Starts container tasks.
struct Launcher {
    prepared: Vec<Prepared>,
    pod_ip: Ipv4Addr,
    /// Where the pod's processes start: its node.
    processes: OnNode,
    label: String,
    updates: mpsc::UnboundedSender<(usize, Update)>,
}

impl Launcher {
    /// Spawns the containers at `range`; returns how many tasks started.
    fn spawn(&self, worker: &Worker, range: std::ops::Range<usize>) -> usize {
        let mut started = 0;
        for index in range {
            let Some(spec) = self.prepared.get(index).cloned() else {
                continue;
            };
            let Some(log) = worker.runtime.logs.get(&spec.name).cloned() else {
                continue;
            };
            // An init container is retried until it succeeds unless the pod never restarts.
            let policy = match (index < worker.n_init, worker.policy) {
                (true, RestartPolicy::Never) => RestartPolicy::Never,
                (true, _) => RestartPolicy::OnFailure,
                (false, policy) => policy,
            };
            tokio::spawn(container::run(container::Context {
                index,
                spec,
                policy,
                pod_ip: self.pod_ip,
                pod_label: self.label.clone(),
                pod_name: worker.runtime.key.name.clone(),
                cluster: worker.cluster.clone(),
                processes: self.processes.clone(),
                log,
                updates: self.updates.clone(),
                stop: worker.stop.subscribe(),
            }));
            started += 1;
        }
        started
    }
}

fn finish(worker: &Worker) {
    worker.runtime.mark_finished();
    // If a delete is in progress (its deletionTimestamp is written before it signals this
    // task), complete it now that no process is left.
    worker
        .cluster
        .finish_pod_deletion(&worker.runtime.key, &worker.runtime.uid);
    worker.cluster.scheduler_wake.notify_one();
}
