//! # kt-kube-emulator: a Kubernetes API server for kt's tests
//!
//! An HTTP server on loopback that speaks the part of the Kubernetes REST API kt uses, so
//! that kt's Kubernetes backend is tested through the real `kube` client and an ordinary
//! kubeconfig, without a cluster. kt's code never knows it talks to an emulator.
//!
//! | piece | what it does |
//! |---|---|
//! | API | discovery, create / get / list / watch / replace / patch / delete / deletecollection, `/status`, label and field selectors, `resourceVersion` conflicts, 410 `Expired`, `BOOKMARK`s, owner-reference garbage collection; objects stored as JSON (pods, services, secrets, configmaps, events, namespaces, nodes, leases, …) |
//! | nodes | one or more ([`EmulatorConfig::nodes`], [`NodeConfig`]), each a Node object with its own labels (`kubernetes.io/hostname` = its name) and allocatable resources, its own `/24` of pod IPs and, with [`PodNetwork::NodeNamespace`], a host of its own on the network (see [Several nodes](#several-nodes)) |
//! | scheduler | per pending pod, the nodes that fit — `nodeSelector`, required node affinity, resources, required inter-pod affinity / anti-affinity (any `topologyKey`, the existing pods' anti-affinity included) — then the best by preferred inter-pod terms, then the first in configuration order; pods no node takes stay `Pending` with `PodScheduled=False, reason=Unschedulable` and the real message, `0/N nodes are available: …` with a count per reason |
//! | kubelet | each container's `command` + `args` runs as a local process (an absolute path on this machine; the image is ignored) in its own process group; each pod gets an IP of its own from its node's `/24` block, which no other emulator on the machine uses (see [Pod networks](#pod-networks)); secret / configMap volumes become files; `pods/log`; readiness probes (exec, tcpSocket, httpGet); restarts with `CrashLoopBackOff`; graceful deletion (SIGTERM, then SIGKILL) |
//! | port-forward | `pods/{name}/portforward` over WebSocket, bridged to `podIP:port` |
//! | failure injection | [`Emulator::fail_image_pull`], [`Emulator::oom_kill`], [`Emulator::evict`], [`Emulator::preempt`], [`Emulator::make_unschedulable`], [`Emulator::fail_deletes`] |
//!
//! ## How a pod runs
//!
//! Scheduling binds the pod to a node (`spec.nodeName`, `PodScheduled=True`, `podIP`
//! from the node's block, `hostIP` = that node's [`Emulator::node_host_address`]); a pod
//! created with `spec.nodeName` already set runs on that node, if it exists, without
//! scheduling. Volumes are materialized in a per-pod temporary
//! directory; init containers run one after another; then every container's `command` +
//! `args` (after `$(VAR)` expansion; `$$` is a literal `$`, as in Kubernetes) is started
//! with a clean environment: the container's `env`/`envFrom` (values, `fieldRef`,
//! `secretKeyRef`, `configMapKeyRef`), `HOSTNAME` = pod name, and only `PATH` and `HOME`
//! from the emulator's environment ([`EmulatorConfig::inherited_env`]). stdout and stderr
//! go to a bounded buffer served by `pods/{name}/log`. The pod is Running once every
//! container started, Ready once every readiness probe passes (probes run every
//! [`EmulatorConfig::probe_period`]). Exits follow `restartPolicy`; quick repeated failures
//! wait in `CrashLoopBackOff` ([`EmulatorConfig::restart_backoff`]). Deletion sends SIGTERM
//! to each container's process group, SIGKILL after the grace period (capped by
//! [`EmulatorConfig::max_grace_period`]), reaps, then removes the object.
//!
//! ## Several nodes
//!
//! [`EmulatorConfig::default`] has one node, [`FIRST_NODE`]. [`EmulatorConfig::nodes`]
//! adds default nodes up to a count (`kt-emulator-node-2`, …) and
//! [`EmulatorConfig::node`] adds one configured by hand; [`EmulatorConfig::allocatable`]
//! and [`EmulatorConfig::node_label`] set the first node. Each node's pods are accounted
//! against that node's allocatable resources only.
//!
//! The scheduler takes pending pods oldest first, and for each keeps the nodes that pass
//! the real scheduler's filters, in its order: `nodeSelector` and required node affinity;
//! resources (and a free pod IP in the node's block); required inter-pod affinity and
//! anti-affinity, on any `topologyKey` (nodes with the same value of that label are one
//! domain, so `kubernetes.io/hostname` means one node), including the required
//! anti-affinity of pods already placed, and letting the first pod of a group whose
//! affinity selects itself start. Preferred inter-pod terms then score those nodes (per
//! matching pod in the node's domain, `+weight` for affinity, `-weight` for
//! anti-affinity), and among the best the first node in configuration order wins: pods
//! fill the first node before the next, so a test knows where a pod lands. (The real
//! scheduler also scores by resource use and breaks ties at random.) A pod that no node
//! takes gets `0/N nodes are available: ` and, sorted, each node's reasons counted over
//! the nodes, e.g. `0/3 nodes are available: 1 node(s) didn't match Pod's node
//! affinity/selector, 2 Insufficient cpu.`; kt's placement groups (pod affinity and
//! anti-affinity on `kubernetes.io/hostname`) therefore pack and spread for real.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kt_kube_emulator::{Emulator, EmulatorConfig, NodeConfig};
//! let config = EmulatorConfig::default()
//!     .nodes(2) // kt-emulator-node, kt-emulator-node-2
//!     .node(NodeConfig::new("gpu-node").allocatable("nvidia.com/gpu", "4"));
//! let emulator = Emulator::start(config).await?;
//! assert_eq!(emulator.node_names(), ["kt-emulator-node", "kt-emulator-node-2", "gpu-node"]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Pod networks
//!
//! [`EmulatorConfig::network`] picks where the nodes' pods live; every node has a `/24`
//! block of its own either way, so a pod IP says which node the pod is on:
//!
//! | [`PodNetwork`] | pod IPs | this machine, seen from a pod | another node's pods, seen from a pod | needs |
//! |---|---|---|---|---|
//! | `SharedLoopback` (default) | `127.B.C.N` on this machine's loopback | `127.0.0.1`, and every other loopback address | at their pod IPs, and at `127.0.0.1` too (one loopback for all) | nothing |
//! | `NodeNamespace` | `198.18.X.N` in a network namespace of the node's, joined to this machine by a veth pair (`kte<X>` on this side) | its node's host end `198.18.X.254`, and every other node's host end; this machine's loopback and `/dev/shm` are out of reach, and the node's `/dev/shm` is its own | at their pod IPs only, routed through this machine; not at loopback, and not their node's `/dev/shm` | root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), a writable `/proc/sys` with more than one node, and iproute2's `ip` |
//!
//! `SharedLoopback` is the fast mode for tests that need nothing else. `NodeNamespace`
//! makes each node a host of its own, so a path that would only work because pods (of
//! one node or of two) and the test share a machine — a server bound to `127.0.0.1`, a
//! file in `/dev/shm` — fails here as it would on a cluster, and a pod-to-pod call
//! between nodes crosses a real route. Every process of a pod runs in its node's
//! namespace, with a mount namespace of its own whose `/dev/shm` is the node's directory.
//!
//! Between nodes: each node's namespace has a route to every other node's block via its
//! own host end, and no default route (a pod can send to the emulator's blocks and
//! nowhere else; nothing leaves this machine with a `198.18` source). This machine
//! forwards what arrives on the emulator's `kte` links: `net.ipv4.conf.kte<X>.forwarding`
//! is set to 1 on each (IPv4 decides forwarding by the link a packet came in on), a
//! setting that goes with the link; machine-wide settings such as `net.ipv4.ip_forward`
//! are left alone. Traffic is routed, not translated: a pod sees another node's pod
//! connect from that node's address. [`Emulator::host_address`] is the first node's host
//! end; pods of other nodes reach it too (this machine answers on all its addresses), so
//! a driver bound there serves pods of every node.
//!
//! The namespaces, their links, addresses, routes and forwarding settings go when the
//! emulator stops or is dropped, and with its process and pods when it is killed: a
//! namespace has no name under `/run/netns`, so `ip netns` does not list it; `nsenter
//! --net=/proc/<pod pid>/ns/net` enters it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use kt_kube_emulator::{Emulator, EmulatorConfig, PodNetwork};
//! let config = EmulatorConfig::default().nodes(2).network(PodNetwork::NodeNamespace);
//! let emulator = Emulator::start(config).await?;
//! // A server in the test that pods of every node must reach binds here, not on 127.0.0.1.
//! let listener = std::net::TcpListener::bind((emulator.host_address(), 0))?;
//! # drop(listener); Ok(())
//! # }
//! ```
//!
//! ### Running the namespace tests
//!
//! The tests that need `NodeNamespace` (`tests/node_namespace.rs`,
//! `tests/pods_on_different_nodes.rs` here; kt's Kubernetes tests, which run on two nodes
//! in this mode) need root. Without it they say why and skip (kt's fall back to
//! loopback); `KT_EMULATOR_NETWORK=namespace` makes that a failure instead, as CI sets it.
//! As root:
//!
//! ```text
//! KT_EMULATOR_NETWORK=namespace cargo test -p kt-kube-emulator
//! KT_EMULATOR_NETWORK=namespace cargo test -p kt --test kubernetes --test semantics_kubernetes
//! ```
//!
//! `KT_EMULATOR_NETWORK=loopback` runs kt's tests on loopback pods instead.
//!
//! ## What differs from a real cluster (what kt's code must allow for)
//!
//! - **Mount paths.** The one concession to having no container filesystem: environment
//!   values (and the working directory) that start with a volume's `mountPath` are
//!   rewritten to where that volume was materialized. Find mounted files through an
//!   environment variable, not a hard-coded path.
//! - **One network namespace per node, shared by its pods.** A node's pods share its
//!   namespace (this machine's, with `SharedLoopback`, where all nodes share it): a server
//!   must bind its pod IP (`status.podIP` through a `fieldRef`), not `0.0.0.0`, or two
//!   pods of a node collide; and a pod's outgoing connections leave from the node's first
//!   address unless it binds its own.
//! - **Scheduling is simpler.** Nodes are scored only by preferred inter-pod terms, then
//!   taken in configuration order (no resource-based scoring, no random tie-break);
//!   `matchLabelKeys` / `mismatchLabelKeys`, topology spread constraints, preemption and
//!   the scheduler's `preemption: …` message suffix are not emulated. Nodes never fail or
//!   go away (no NotReady, no node failure injection).
//! - **No DNS, no service proxying.** Services are stored (with a `clusterIP`) but nothing
//!   routes to them; reach pods by their IPs from the API.
//! - **No in-cluster config.** No service-account token is mounted; a process that needs
//!   the API gets a kubeconfig path through its env.
//! - **Images are ignored** except by [`Emulator::fail_image_pull`]; containers without a
//!   `command`, or whose command cannot be started (not on this machine, not executable),
//!   terminate with `StartError`, exit code 128 and a message naming the command, as
//!   containerd reports them.
//! - Not emulated: exec/attach, kubectl's SPDY port-forward (kube's WebSocket one works),
//!   controllers for deployments/jobs (stored only), field managers of server-side apply
//!   (applied as a strategic merge), OpenAPI documents (`kubectl apply` needs
//!   `--validate=false`), sidecar init containers, taints and tolerations, priorities.
//!
//! ## Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::api::{Api, LogParams, PostParams};
//! use kube::config::{KubeConfigOptions, Kubeconfig};
//! use kube::runtime::wait::await_condition;
//! use kt_kube_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! // An ordinary kubeconfig: the same code would talk to a real cluster.
//! let kubeconfig = Kubeconfig::from_yaml(&emulator.kubeconfig_yaml())?;
//! let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
//! let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config)?);
//!
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "hello"},
//!     "spec": {"restartPolicy": "Never", "containers": [{
//!         "name": "main", "image": "busybox",
//!         "command": ["/bin/sh", "-c", "echo hello from $(POD_NAME)"],
//!         "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
//!     }]},
//! }))?;
//! pods.create(&PostParams::default(), &pod).await?;
//! let done = |p: Option<&Pod>| {
//!     p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Succeeded")
//! };
//! await_condition(pods.clone(), "hello", done).await?;
//! assert_eq!(pods.logs("hello", &LogParams::default()).await?, "hello from hello\n");
//! emulator.shutdown().await; // dropping it also kills and reaps every pod process
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod cluster;
mod conditions;
mod config;
mod events;
mod faults;
mod ipblock;
mod kubeconfig;
mod kubelet;
mod logs_api;
mod network;
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

pub use config::{EmulatorConfig, FIRST_NODE, NodeConfig};
pub use kubelet::InjectError;
pub use network::{LinkFaults, NetworkError, PodNetwork};

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
    /// No pod IP block (a `/24` of loopback or of `198.18.0.0/15`) is free on this machine.
    #[error("no free pod IP block: {0}")]
    PodIpBlock(#[source] std::io::Error),
    /// A node's network namespace, or the routes between nodes, could not be made
    /// ([`PodNetwork::NodeNamespace`]).
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// [`EmulatorConfig::nodes`] is empty, or names a node twice.
    #[error("invalid nodes: {0}")]
    Nodes(String),
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
        config::check_nodes(&config.nodes).map_err(EmulatorError::Nodes)?;
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
        let network =
            network::Network::create(config.network, config.pod_ip_block, config.nodes.len())?;
        let cluster = Cluster::new(config, address.to_string(), network);
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

    /// The address pods reach this machine at (where the emulator and the test's driver
    /// run): `127.0.0.1` with [`PodNetwork::SharedLoopback`]; with
    /// [`PodNetwork::NodeNamespace`], the host end of the first node's veth pair
    /// (`198.18.X.254`), which pods of every node reach (those of other nodes through
    /// their own host end, which routes to it). A driver whose actors pods must call binds
    /// its node here. It is the `status.hostIP` of the first node's pods; other nodes'
    /// pods have their own node's ([`node_host_address`](Self::node_host_address)).
    pub fn host_address(&self) -> std::net::Ipv4Addr {
        self.cluster.network.host_address()
    }

    /// The address node `node`'s pods reach this machine at, and their `status.hostIP`:
    /// `127.0.0.1` with [`PodNetwork::SharedLoopback`], the host end of that node's veth
    /// pair with [`PodNetwork::NodeNamespace`]. `None` if there is no such node.
    pub fn node_host_address(&self, node: &str) -> Option<std::net::Ipv4Addr> {
        Some(self.cluster.node_network(node)?.host_address())
    }

    /// The first emulated node's name (with one node, what every scheduled pod gets as
    /// `spec.nodeName`).
    pub fn node_name(&self) -> &str {
        self.cluster
            .config
            .nodes
            .first()
            .map_or(config::FIRST_NODE, |n| n.name.as_str())
    }

    /// Every emulated node's name, in the order the scheduler tries them.
    pub fn node_names(&self) -> Vec<&str> {
        self.cluster
            .config
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect()
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

    /// Puts `faults` (a rate limit) on node `node`'s link, both ways: everything between
    /// its pods and this machine or the other nodes' pods meets them; a clean
    /// [`LinkFaults::new`] takes them off. Only with [`PodNetwork::NodeNamespace`], where a
    /// node is a host of its own (needs iproute2's `tc` and the kernel's `tbf` queue).
    pub fn set_link_faults(&self, node: &str, faults: &LinkFaults) -> Result<(), NetworkError> {
        let network = self
            .cluster
            .node_network(node)
            .ok_or_else(|| NetworkError {
                step: "putting faults on a node's link".into(),
                message: format!("there is no node {node:?}"),
            })?;
        network.set_faults(faults)
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

    /// The next `times` API requests that delete the object `name` of `resource` (its
    /// plural: `pods`, `secrets`, `configmaps`, ...) in `namespace` fail with
    /// `500 InternalError`, as an overloaded API server or a timed-out webhook does; the
    /// object stays. `u32::MAX` makes them fail until [`allow_deletes`](Self::allow_deletes).
    /// Deletes the emulator does itself (garbage collection) are not affected.
    pub fn fail_deletes(&self, resource: &str, namespace: &str, name: &str, times: u32) {
        self.cluster
            .faults
            .fail_deletes(resource, namespace, name, times);
    }

    /// Undoes [`fail_deletes`](Self::fail_deletes) for this object.
    pub fn allow_deletes(&self, resource: &str, namespace: &str, name: &str) {
        self.cluster
            .faults
            .fail_deletes(resource, namespace, name, 0);
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
        self.cluster.network.tear_down();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
