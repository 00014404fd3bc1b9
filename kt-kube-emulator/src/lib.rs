//! # kt-kube-emulator: a Kubernetes API server for kt's tests
//!
//! An HTTP server on loopback that speaks the part of the Kubernetes REST API kt uses, so
//! that kt's Kubernetes backend is tested through the real `kube` client and an ordinary
//! kubeconfig, without a cluster. kt's code never knows it talks to an emulator.
//!
//! | piece | what it does |
//! |---|---|
//! | API | discovery, create / get / list / watch / replace / patch / delete / deletecollection, `/status`, label and field selectors, `resourceVersion` conflicts, 410 `Expired`, `BOOKMARK`s, owner-reference garbage collection; objects stored as JSON (pods, services, secrets, configmaps, events, namespaces, nodes, leases, …) |
//! | scheduler | one node with configurable allocatable resources and labels; pods that do not fit stay `Pending` with `PodScheduled=False, reason=Unschedulable` and the real message |
//! | kubelet | each container's `command` + `args` runs as a local process (an absolute path on this machine; the image is ignored) in its own process group; each pod gets its own loopback IP (`127.0.1.N`); secret / configMap volumes become files; `pods/log`; readiness probes (exec, tcpSocket, httpGet); restarts with `CrashLoopBackOff`; graceful deletion (SIGTERM, then SIGKILL) |
//! | port-forward | `pods/{name}/portforward` over WebSocket, bridged to `podIP:port` |
//! | failure injection | [`Emulator::fail_image_pull`], [`Emulator::oom_kill`], [`Emulator::evict`], [`Emulator::preempt`], [`Emulator::make_unschedulable`] |
//!
//! The one concession to having no container filesystem: environment values (and the
//! working directory) that start with a volume's `mountPath` are rewritten to where that
//! volume was materialized. Processes must bind to their pod IP (`status.podIP` through a
//! `fieldRef`), not `0.0.0.0`, since all pods share the host's network namespace.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kt_kube_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let kubeconfig = emulator.kubeconfig_yaml();
//! assert!(kubeconfig.contains(&emulator.url()));
//! // Hand `kubeconfig` to kube::Config::from_custom_kubeconfig, or write it to a file
//! // for kubectl with `emulator.write_kubeconfig(path)`.
//! emulator.shutdown().await; // dropping it also kills every pod process
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod cluster;
mod config;
mod faults;
mod kubeconfig;
mod kubelet;
mod logs_api;
mod patch;
mod portforward;
mod quantity;
mod resources;
mod scheduler;
mod selector;
mod server;
mod status;
mod store;
mod table;
mod time;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

pub use config::EmulatorConfig;
pub use kubelet::InjectError;

use cluster::Cluster;
use kubelet::PodCommand;
use selector::LabelSelector;

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A label selector given to an injection rule does not parse.
    #[error("invalid label selector {selector:?}: {message}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A running emulated cluster. Dropping it stops the server and kills and reaps every pod
/// process (also when a test panics); [`shutdown`](Self::shutdown) does the same and waits
/// for the server task.
pub struct Emulator {
    cluster: Arc<Cluster>,
    address: SocketAddr,
    server: Option<JoinHandle<()>>,
    scheduler: JoinHandle<()>,
}

impl Emulator {
    /// Starts the API server, the scheduler and the kubelet on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let (ip, port) = config.listen;
        let listener = tokio::net::TcpListener::bind((ip, port))
            .await
            .map_err(|source| EmulatorError::Listen {
                address: format!("{ip}:{port}"),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| EmulatorError::Listen {
                address: format!("{ip}:{port}"),
                source,
            })?;
        let cluster = Cluster::new(config, address.to_string());
        let server = tokio::spawn(server::serve(listener, cluster.clone()));
        let scheduler = tokio::spawn(scheduler::run(cluster.clone()));
        Ok(Emulator {
            cluster,
            address,
            server: Some(server),
            scheduler,
        })
    }

    /// The API server's socket address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The API server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The emulated node's name (what scheduled pods get as `spec.nodeName`).
    pub fn node_name(&self) -> &str {
        &self.cluster.config.node_name
    }

    /// A kubeconfig for this emulator; its context's namespace is the configured default.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::yaml(&self.url(), &self.cluster.config.default_namespace)
    }

    /// Writes [`kubeconfig_yaml`](Self::kubeconfig_yaml) to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// From now on, pulling `image` fails: containers wait with `ErrImagePull`, then
    /// `ImagePullBackOff`, retrying until [`allow_image_pull`](Self::allow_image_pull).
    pub fn fail_image_pull(&self, image: &str) {
        self.cluster.faults.set_image_missing(image, true);
    }

    /// Undoes [`fail_image_pull`](Self::fail_image_pull): waiting containers start at
    /// their next retry.
    pub fn allow_image_pull(&self, image: &str) {
        self.cluster.faults.set_image_missing(image, false);
    }

    /// Kills the first running container of the pod with SIGKILL and reports it as
    /// `terminated {reason: OOMKilled, exitCode: 137}`; the restart policy then applies.
    pub fn oom_kill(&self, namespace: &str, pod: &str) -> Result<(), InjectError> {
        self.cluster
            .kubelet
            .inject(namespace, pod, PodCommand::OomKill(None))
    }

    /// Like [`oom_kill`](Self::oom_kill), for a named container.
    pub fn oom_kill_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(), InjectError> {
        self.cluster.kubelet.inject(
            namespace,
            pod,
            PodCommand::OomKill(Some(container.to_string())),
        )
    }

    /// Evicts the pod as the kubelet does under memory pressure: its processes are killed,
    /// it gets `DisruptionTarget=True (TerminationByKubelet)`, phase `Failed`,
    /// `status.reason = Evicted` and the kubelet's message. The object stays.
    pub fn evict(&self, namespace: &str, pod: &str) -> Result<(), InjectError> {
        self.cluster
            .kubelet
            .inject(namespace, pod, PodCommand::Evict)
    }

    /// Preempts the pod as the scheduler does: condition `DisruptionTarget=True,
    /// reason=PreemptionByScheduler`, then a graceful delete.
    pub fn preempt(&self, namespace: &str, pod: &str) -> Result<(), InjectError> {
        self.cluster
            .kubelet
            .inject(namespace, pod, PodCommand::Preempt)
    }

    /// Makes every pod that is not yet scheduled unschedulable with `message` (written to
    /// its `PodScheduled` condition, e.g. `0/1 nodes are available: 1 node(s) had untolerated
    /// taint {x: y}.`), until [`clear_unschedulable`](Self::clear_unschedulable).
    pub fn make_unschedulable(&self, message: &str) {
        self.cluster
            .faults
            .add_unschedulable(None, message.to_string());
        self.cluster.scheduler_wake.notify_one();
    }

    /// Like [`make_unschedulable`](Self::make_unschedulable), only for pods whose labels
    /// match `label_selector` (the `?labelSelector=` syntax).
    pub fn make_unschedulable_matching(
        &self,
        label_selector: &str,
        message: &str,
    ) -> Result<(), EmulatorError> {
        let selector =
            LabelSelector::parse(label_selector).map_err(|message| EmulatorError::Selector {
                selector: label_selector.to_string(),
                message,
            })?;
        self.cluster
            .faults
            .add_unschedulable(Some(selector), message.to_string());
        self.cluster.scheduler_wake.notify_one();
        Ok(())
    }

    /// Removes every forced-unschedulable rule; pending pods are scheduled again.
    pub fn clear_unschedulable(&self) {
        self.cluster.faults.clear_unschedulable();
        self.cluster.scheduler_wake.notify_one();
    }

    /// Stops the server and the scheduler, kills and reaps every pod process, and waits
    /// until the server task has ended (its port is closed when this returns).
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            // Aborted just above: the result is the cancellation, which is expected.
            let _ = server.await;
        }
    }

    fn stop(&self) {
        if let Some(server) = &self.server {
            server.abort();
        }
        self.scheduler.abort();
        self.cluster.kubelet.shutdown();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
