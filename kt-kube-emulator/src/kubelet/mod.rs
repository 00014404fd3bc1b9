//! The emulated kubelet: runs each scheduled pod's containers as local processes and keeps
//! the pod's status the way the real kubelet reports it.
//!
//! - `pod`: one task per pod (status, deletion, injected failures)
//! - `container`: one task per container (pull, run, probe, restart, back-off)
//! - `process`: process groups, and killing every one of them on shutdown
//! - `env` and `volumes`: what the process sees (environment, files)
//! - `logs`: bounded output buffers for `pods/log`

mod container;
mod env;
pub(crate) mod logs;
mod pod;
pub(crate) mod process;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::resources;
use crate::store::Key;
use logs::ContainerLog;
use process::Processes;

/// What a pod's task can be told to do.
#[derive(Debug)]
pub(crate) enum PodCommand {
    /// Stop every container (SIGTERM, then SIGKILL after the grace period) for deletion.
    Terminate(Duration),
    /// Kill a container (the first running one if unnamed) as the OOM killer would.
    OomKill(Option<String>),
    /// Kill everything and fail the pod as evicted.
    Evict,
    /// Mark the pod as a preemption victim and delete it.
    Preempt,
}

/// The kubelet's handle on one running pod.
pub(crate) struct PodRuntime {
    pub key: Key,
    pub uid: String,
    pub logs: BTreeMap<String, Arc<ContainerLog>>,
    control: mpsc::UnboundedSender<PodCommand>,
    /// Set once no process of the pod is left or will start. Commands are sent under this
    /// lock, so a command is either sent before the task finishes or refused.
    finished: Mutex<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PodRuntime {
    fn finished(&self) -> MutexGuard<'_, bool> {
        self.finished.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_finished(&self) {
        *self.finished() = true;
    }

    /// Sends a command if the pod still runs.
    fn send(&self, command: PodCommand) -> bool {
        let finished = self.finished();
        !*finished && self.control.send(command).is_ok()
    }
}

/// Why an injected failure could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// No such pod, or the pod has not been started on the node.
    #[error("pod {namespace}/{name} is not running on the emulated node")]
    NotRunning {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
}

/// All pods the kubelet runs, on every node.
pub(crate) struct Kubelet {
    pods: Mutex<HashMap<String, Arc<PodRuntime>>>,
    pub processes: Arc<Processes>,
}

impl Kubelet {
    /// A kubelet with no pods yet, for every node (each pod's processes enter its node's
    /// namespaces, if any: see [`Processes::on_node`]).
    pub fn new() -> Self {
        Kubelet {
            pods: Mutex::default(),
            processes: Arc::new(Processes::default()),
        }
    }

    fn pods(&self) -> MutexGuard<'_, HashMap<String, Arc<PodRuntime>>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a bound pod (no-op if already started).
    pub fn start(&self, cluster: &Arc<Cluster>, pod: &Value) {
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut pods = self.pods();
        if pods.contains_key(&uid) {
            return;
        }
        let logs = ["/spec/initContainers", "/spec/containers"]
            .into_iter()
            .flat_map(|p| {
                pod.pointer(p)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .map(|name| {
                (
                    name.to_string(),
                    Arc::new(ContainerLog::new(cluster.config.log_limit_bytes)),
                )
            })
            .collect();
        let (control, control_rx) = mpsc::unbounded_channel();
        let runtime = Arc::new(PodRuntime {
            key: Key::of(resources::pods(), pod),
            uid: uid.clone(),
            logs,
            control,
            finished: Mutex::new(false),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(pod::run(
            cluster.clone(),
            runtime.clone(),
            pod.clone(),
            control_rx,
        ));
        *runtime.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        pods.insert(uid, runtime);
    }

    /// Whether the pod has a task that has not finished.
    pub fn is_running(&self, uid: &str) -> bool {
        self.pods().get(uid).is_some_and(|rt| !*rt.finished())
    }

    /// Whether the pod was ever started here.
    pub fn is_started(&self, uid: &str) -> bool {
        self.pods().contains_key(uid)
    }

    /// Begins graceful termination; false if nothing runs (the caller removes the pod).
    pub fn terminate(&self, uid: &str, grace_seconds: i64, cap: Duration) -> bool {
        let grace = Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0)).min(cap);
        let runtime = self.pods().get(uid).cloned();
        runtime.is_some_and(|rt| rt.send(PodCommand::Terminate(grace)))
    }

    /// The pod object is gone: drop its runtime (and, defensively, its task).
    pub fn forget(&self, uid: &str) {
        if let Some(rt) = self.pods().remove(uid)
            && let Some(task) = rt.task.lock().unwrap_or_else(|p| p.into_inner()).take()
            && !*rt.finished()
        {
            task.abort();
        }
    }

    /// The runtime of the pod currently stored under `namespace/name`.
    pub fn runtime(&self, namespace: &str, name: &str) -> Option<Arc<PodRuntime>> {
        self.pods()
            .values()
            .find(|rt| rt.key.namespace == namespace && rt.key.name == name)
            .cloned()
    }

    /// Sends an injected failure to a running pod.
    pub fn inject(
        &self,
        namespace: &str,
        name: &str,
        command: PodCommand,
    ) -> Result<(), InjectError> {
        let not_running = || InjectError::NotRunning {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let rt = self.runtime(namespace, name).ok_or_else(not_running)?;
        if rt.send(command) {
            Ok(())
        } else {
            Err(not_running())
        }
    }

    /// Stops everything now: aborts every pod task and kills and reaps every process.
    pub fn shutdown(&self) {
        self.processes.kill_all();
        let pods: Vec<Arc<PodRuntime>> = self.pods().drain().map(|(_, rt)| rt).collect();
        for rt in pods {
            if let Some(task) = rt.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}
