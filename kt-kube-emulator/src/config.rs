//! Settings of an emulated cluster: its nodes and their resources, and the time scales of
//! the emulated kubelet (kept short by default so that tests are fast).

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
    /// The emulated nodes, in the order the scheduler tries them. Never empty when the
    /// emulator starts; the first is [`FIRST_NODE`] unless changed, and it is the node that
    /// [`allocatable`](Self::allocatable) and [`node_label`](Self::node_label) set.
    pub nodes: Vec<NodeConfig>,
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
    /// First pod IP block to try: each node claims the first block `[B, C]` at or after
    /// this one that no other emulator on the machine (or other node of this one) holds,
    /// and its pods get `127.B.C.1` .. `127.B.C.253` (or, in a node namespace, the block's
    /// `198.18.X.1` .. `198.18.X.253`).
    pub pod_ip_block: [u8; 2],
    /// Where pods live on the network: on this machine's loopback (the default), or each
    /// node's in a network namespace of that node's own.
    pub network: PodNetwork,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: (Ipv4Addr::LOCALHOST, 0),
            nodes: vec![NodeConfig::new(FIRST_NODE)],
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
    /// Sets one allocatable resource of the first node (e.g. `("nvidia.com/gpu", "2")`);
    /// other nodes are set through their [`NodeConfig`].
    pub fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        if let Some(first) = self.nodes.first_mut() {
            first
                .allocatable
                .insert(resource.to_string(), quantity.to_string());
        }
        self
    }

    /// Adds a node after those already configured.
    pub fn node(mut self, node: NodeConfig) -> Self {
        self.nodes.push(node);
        self
    }

    /// Makes the cluster `count` nodes: those already configured, then default ones
    /// ([`NodeConfig::new`]) named `kt-emulator-node-2`, `kt-emulator-node-3`, …, after
    /// their place. Never removes a node.
    pub fn nodes(mut self, count: usize) -> Self {
        while self.nodes.len() < count {
            let place = self.nodes.len() + 1;
            self.nodes
                .push(NodeConfig::new(&format!("{FIRST_NODE}-{place}")));
        }
        self
    }

    /// Sets where pods live on the network (see [`PodNetwork`]).
    pub fn network(mut self, network: PodNetwork) -> Self {
        self.network = network;
        self
    }

    /// Sets one label of the first node; other nodes are labelled through their
    /// [`NodeConfig`].
    pub fn node_label(mut self, key: &str, value: &str) -> Self {
        if let Some(first) = self.nodes.first_mut() {
            first.labels.insert(key.to_string(), value.to_string());
        }
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

/// The first node's name, unless the configuration changes it.
pub const FIRST_NODE: &str = "kt-emulator-node";

/// One emulated node: a name, labels and allocatable resources. In
/// [`PodNetwork::NodeNamespace`] it is also a host of its own on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The node's name (what its pods get as `spec.nodeName`); unique in the cluster.
    pub name: String,
    /// Labels of the node (matched against `nodeSelector`, node affinity, and the
    /// `topologyKey` of inter-pod affinity terms).
    pub labels: BTreeMap<String, String>,
    /// Allocatable resources of the node, as quantities (`cpu`, `memory`, `pods`, extended
    /// resources such as `nvidia.com/gpu`).
    pub allocatable: BTreeMap<String, String>,
}

impl NodeConfig {
    /// A node named `name` with the well-known labels a kubelet sets
    /// (`kubernetes.io/hostname` = `name`, `kubernetes.io/os`, `kubernetes.io/arch`) and
    /// this machine's CPUs, 16Gi of memory, no GPU and 110 pods allocatable.
    pub fn new(name: &str) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.to_string()),
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
        NodeConfig {
            name: name.to_string(),
            labels,
            allocatable,
        }
    }

    /// Sets one label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets one allocatable resource (e.g. `("cpu", "2")`).
    pub fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        self.allocatable
            .insert(resource.to_string(), quantity.to_string());
        self
    }
}

/// Why a configuration cannot start: no node, or two nodes of one name.
pub(crate) fn check_nodes(nodes: &[NodeConfig]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("the cluster has no node".into());
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.name.is_empty() {
            return Err(format!("node {} has no name", i + 1));
        }
        if nodes[..i].iter().any(|other| other.name == node.name) {
            return Err(format!("two nodes are named {:?}", node.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_count_from_the_first_and_builders_set_the_first() {
        let config = EmulatorConfig::default()
            .allocatable("cpu", "3")
            .node_label("pool", "a")
            .nodes(3);
        let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kt-emulator-node",
                "kt-emulator-node-2",
                "kt-emulator-node-3"
            ]
        );
        assert_eq!(config.nodes[0].allocatable["cpu"], "3");
        assert_eq!(config.nodes[0].labels["pool"], "a");
        assert!(!config.nodes[1].labels.contains_key("pool"));
        assert_eq!(
            config.nodes[2].labels["kubernetes.io/hostname"],
            "kt-emulator-node-3"
        );
        assert_eq!(config.clone().nodes(2).nodes.len(), 3);
        assert_eq!(check_nodes(&config.nodes), Ok(()));
    }

    #[test]
    fn nodes_need_distinct_names() {
        let twice = EmulatorConfig::default().node(NodeConfig::new(FIRST_NODE));
        assert!(check_nodes(&twice.nodes).is_err());
        assert!(check_nodes(&[]).is_err());
    }
}
