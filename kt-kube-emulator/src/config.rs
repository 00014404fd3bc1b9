//! Settings of an emulated cluster: the node, its resources, and the time scales of the
//! emulated kubelet (kept short by default so that tests are fast).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::network::PodNetwork;

/// How to start an [`Emulator`](crate::Emulator). Start from [`EmulatorConfig::default`] and
/// change what the test needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Address the API server listens on (port 0 picks a free port).
    pub listen: (Ipv4Addr, u16),
    /// Name of the one emulated node.
    pub node_name: String,
    /// Labels of the node (matched against `nodeSelector` and node affinity).
    pub node_labels: BTreeMap<String, String>,
    /// Allocatable resources of the node, as quantities (`cpu`, `memory`, `pods`, extended
    /// resources such as `nvidia.com/gpu`).
    pub allocatable: BTreeMap<String, String>,
    /// Namespace of the kubeconfig's context.
    pub default_namespace: String,
    /// Images whose pull fails (`ErrImagePull`, then `ImagePullBackOff`).
    pub missing_images: Vec<String>,
    /// First delay before restarting a container that keeps failing quickly; doubles up to
    /// [`max_restart_backoff`](Self::max_restart_backoff). The real kubelet uses 10 s.
    pub restart_backoff: Duration,
    /// Longest restart back-off (the real kubelet: 5 min).
    pub max_restart_backoff: Duration,
    /// A container that exits sooner than this after starting counts as a quick failure;
    /// after two in a row it waits in `CrashLoopBackOff` before the next restart.
    pub crash_loop_threshold: Duration,
    /// Time between `ErrImagePull` and `ImagePullBackOff`, and between pull retries.
    pub image_pull_backoff: Duration,
    /// Cap on the grace period between SIGTERM and SIGKILL when a pod is deleted.
    pub max_grace_period: Duration,
    /// Period of readiness probes (the pod spec's `periodSeconds` is ignored so that tests
    /// do not wait seconds for readiness).
    pub probe_period: Duration,
    /// Bytes of output kept per container instance for `pods/log`.
    pub log_limit_bytes: usize,
    /// Interval between `BOOKMARK` events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Changes kept for watches; a watch from an older resourceVersion gets 410 Gone.
    pub history_capacity: usize,
    /// Variables of the emulator's own environment that container processes inherit
    /// (a real container starts from its image's environment; `PATH` is the useful part).
    pub inherited_env: Vec<String>,
    /// First pod IP block to try: pods get `127.B.C.1` .. `127.B.C.253` (or, in a node
    /// namespace, the block's `198.18.X.1` .. `198.18.X.253`) from the first block `[B, C]`
    /// at or after this one that no other emulator on the machine holds.
    pub pod_ip_block: [u8; 2],
    /// Where pods live on the network: on this machine's loopback (the default), or in a
    /// network namespace of the node's own.
    pub network: PodNetwork,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let node_name = "kt-emulator-node".to_string();
        let node_labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), node_name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
            ),
        ]);
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), cpus.to_string()),
            ("memory".to_string(), "16Gi".to_string()),
            ("nvidia.com/gpu".to_string(), "0".to_string()),
            ("pods".to_string(), "110".to_string()),
        ]);
        EmulatorConfig {
            listen: (Ipv4Addr::LOCALHOST, 0),
            node_name,
            node_labels,
            allocatable,
            default_namespace: "default".to_string(),
            missing_images: Vec::new(),
            restart_backoff: Duration::from_millis(100),
            max_restart_backoff: Duration::from_secs(1),
            crash_loop_threshold: Duration::from_secs(10),
            image_pull_backoff: Duration::from_millis(100),
            max_grace_period: Duration::from_secs(2),
            probe_period: Duration::from_millis(50),
            log_limit_bytes: 1 << 20,
            bookmark_interval: Duration::from_secs(1),
            history_capacity: 10_000,
            inherited_env: vec!["PATH".to_string(), "HOME".to_string()],
            pod_ip_block: [0, 1],
            network: PodNetwork::SharedLoopback,
        }
    }
}

impl EmulatorConfig {
    /// Sets one allocatable resource of the node (e.g. `("nvidia.com/gpu", "2")`).
    pub fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        self.allocatable
            .insert(resource.to_string(), quantity.to_string());
        self
    }

    /// Sets where pods live on the network (see [`PodNetwork`]).
    pub fn network(mut self, network: PodNetwork) -> Self {
        self.network = network;
        self
    }

    /// Sets one label of the node.
    pub fn node_label(mut self, key: &str, value: &str) -> Self {
        self.node_labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the cap on termination grace periods.
    pub fn max_grace_period(mut self, cap: Duration) -> Self {
        self.max_grace_period = cap;
        self
    }

    /// Sets the first restart back-off and its cap.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.restart_backoff = first;
        self.max_restart_backoff = max;
        self
    }
}
