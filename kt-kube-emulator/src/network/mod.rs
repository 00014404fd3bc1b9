//! The emulated nodes' pod networks: which addresses each node's pods get, and where their
//! processes run.
//!
//! Every node claims a `/24` block of its own ([`IpBlock`]), so a pod's IP says which node
//! it is on. In [`PodNetwork::SharedLoopback`] pods share the host's network namespace,
//! each on a loopback address `127.B.C.N` of its node's block. In
//! [`PodNetwork::NodeNamespace`] each node is a host of its own (`namespace`): an unnamed
//! network namespace joined to this machine by a veth pair, pods on `198.18.X.N` (RFC
//! 2544's benchmarking range, never routed), this machine on `198.18.X.254`; nodes reach
//! each other's pods through this machine (`routes`). Loopback addresses and shared memory
//! then do not cross between nodes, or between a node and the host, as on a real cluster.

mod faults;
mod ip;
mod namespace;
mod routes;

use std::net::Ipv4Addr;

use crate::ipblock::IpBlock;
pub use faults::LinkFaults;
pub(crate) use namespace::Isolation;
use namespace::NodeNamespace;

/// Where the emulated nodes' pods live on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PodNetwork {
    /// Pods share this machine's network namespace (and `/dev/shm`), each on its own
    /// loopback IP `127.B.C.N` (a block per node). Fast and needs no privileges; but a
    /// server bound to `127.0.0.1` on the host, or in a pod of another node, is reachable
    /// from every pod, which a real cluster never allows.
    #[default]
    SharedLoopback,
    /// Each node's pods run in a network namespace of that node's own, joined to this
    /// machine by a veth pair: pods get `198.18.X.N` (a block per node), this machine
    /// `198.18.X.254` on that node's link, and each pod process the node's `/dev/shm`.
    /// Pods reach other nodes' pods at their pod IPs, routed through this machine. Needs
    /// root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), a writable `/proc/sys` where there is
    /// more than one node, and iproute2's `ip`.
    NodeNamespace,
}

/// Why a node's network namespace could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot make the node's network namespace ({step}): {message}; PodNetwork::NodeNamespace \
     needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`; use \
     PodNetwork::SharedLoopback where neither is available"
)]
pub struct NetworkError {
    /// What was being done.
    pub step: String,
    /// What went wrong.
    pub message: String,
}

/// The blocks a namespace network can use: `198.18.0.0/15` holds 512 `/24`s.
pub(crate) const NAMESPACE_BLOCKS: u16 = 512;

/// Every node's pod network, made for one emulator and undone when it is dropped; the
/// nodes in configuration order.
pub(crate) struct Network {
    nodes: Vec<NodeNetwork>,
}

/// One node's pod network: its block and, in a namespace network, its namespace.
pub(crate) struct NodeNetwork {
    block: IpBlock,
    namespace: Option<NodeNamespace>,
}

impl Network {
    /// Claims a free block for each of `nodes` nodes and, for
    /// [`PodNetwork::NodeNamespace`], makes their namespaces and the routes between them.
    /// What was made before a failure is undone (dropped).
    pub fn create(
        kind: PodNetwork,
        first_block: [u8; 2],
        nodes: usize,
    ) -> Result<Network, crate::EmulatorError> {
        let limit = match kind {
            PodNetwork::SharedLoopback => u16::MAX,
            PodNetwork::NodeNamespace => NAMESPACE_BLOCKS - 1,
        };
        let mut made = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            // Each claim is held until the emulator goes, so the next one finds another
            // block.
            let block =
                IpBlock::claim(first_block, limit).map_err(crate::EmulatorError::PodIpBlock)?;
            let namespace = match kind {
                PodNetwork::SharedLoopback => None,
                PodNetwork::NodeNamespace => Some(NodeNamespace::create(block.index())?),
            };
            made.push(NodeNetwork { block, namespace });
        }
        let namespaces: Vec<&NodeNamespace> =
            made.iter().filter_map(|n| n.namespace.as_ref()).collect();
        routes::join(&namespaces)?;
        Ok(Network { nodes: made })
    }

    /// The network of the node at `index` in configuration order.
    pub fn node(&self, index: usize) -> Option<&NodeNetwork> {
        self.nodes.get(index)
    }

    /// The address pods reach this machine at, on the first node (see
    /// [`Emulator::host_address`](crate::Emulator::host_address)).
    pub fn host_address(&self) -> Ipv4Addr {
        self.nodes
            .first()
            .map_or(Ipv4Addr::LOCALHOST, NodeNetwork::host_address)
    }

    /// Removes every namespace and its link (idempotent; pods must be gone first).
    pub fn tear_down(&self) {
        for node in &self.nodes {
            if let Some(ns) = &node.namespace {
                ns.tear_down();
            }
        }
    }
}

impl NodeNetwork {
    /// Pod address `n` (1..=253) of this node.
    pub fn pod_address(&self, n: u8) -> Ipv4Addr {
        match &self.namespace {
            None => self.block.loopback_address(n),
            Some(_) => namespace_address(self.block.index(), n),
        }
    }

    /// The first pod address of this node not in `taken`, if any is left.
    pub fn free(&self, taken: &[String]) -> Option<Ipv4Addr> {
        (1..=253)
            .map(|n| self.pod_address(n))
            .find(|ip| !taken.iter().any(|t| *t == ip.to_string()))
    }

    /// The address this node's pods reach this machine at (their `hostIP`).
    pub fn host_address(&self) -> Ipv4Addr {
        match &self.namespace {
            None => Ipv4Addr::LOCALHOST,
            Some(_) => namespace_address(self.block.index(), 254),
        }
    }

    /// Puts `faults` on both ends of this node's link (a clean [`LinkFaults`] takes
    /// them off); only a node of its own namespace has a link.
    pub fn set_faults(&self, faults: &LinkFaults) -> Result<(), NetworkError> {
        let Some(ns) = &self.namespace else {
            return Err(NetworkError {
                step: "putting faults on a node's link".into(),
                message: "pods of PodNetwork::SharedLoopback share this machine's loopback,                           which has no link of the node's own"
                    .into(),
            });
        };
        ip::tc(None, &faults.tc_command(ns.host_link()))?;
        ip::tc(Some(ns.netns()), &faults.tc_command("eth0"))
    }

    /// What a process of this node's pods must enter before it runs, if anything.
    pub fn isolation(&self) -> Option<Isolation> {
        self.namespace.as_ref().map(NodeNamespace::isolation)
    }
}

/// `198.18.0.0 + block × 256 + n`.
fn namespace_address(block: u16, n: u8) -> Ipv4Addr {
    let [hi, lo] = block.to_be_bytes();
    Ipv4Addr::new(198, 18 + (hi & 1), lo, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_blocks_cover_198_18_slash_15() {
        assert_eq!(namespace_address(1, 7), Ipv4Addr::new(198, 18, 1, 7));
        assert_eq!(
            namespace_address(255, 254),
            Ipv4Addr::new(198, 18, 255, 254)
        );
        assert_eq!(namespace_address(256, 1), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(
            namespace_address(NAMESPACE_BLOCKS - 1, 253),
            Ipv4Addr::new(198, 19, 255, 253)
        );
    }

    #[test]
    fn every_loopback_node_gets_a_block_of_its_own() {
        let network =
            Network::create(PodNetwork::SharedLoopback, [0, 220], 3).expect("three blocks");
        let firsts: Vec<Ipv4Addr> = (0..3)
            .filter_map(|i| network.node(i))
            .map(|n| n.pod_address(1))
            .collect();
        assert_eq!(firsts.len(), 3);
        assert!(firsts[0] != firsts[1] && firsts[1] != firsts[2] && firsts[0] != firsts[2]);
        assert_eq!(network.host_address(), Ipv4Addr::LOCALHOST);
        assert!(network.node(3).is_none());
    }
}
