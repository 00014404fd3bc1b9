//! Routes between nodes: a pod on node A reaches a pod on node B at B's pod IP through
//! this machine, as pods on different hosts of a flat pod network do.
//!
//! Each node's namespace gets a route to every other node's block via its own host end
//! (`198.18.A.254`), and this machine forwards what arrives on the nodes' links: their
//! connected routes (`198.18.B.0/24 dev kteB`) already say where each block is. The
//! namespaces get no default route, so a pod can send only to the emulator's own blocks:
//! nothing is forwarded out of this machine with a `198.18` source, and this machine's
//! other addresses stay out of reach. Reverse-path filtering passes this traffic, strict
//! or not: a packet from node B's block arrives on B's link, which is the route back.

use super::NetworkError;
use super::ip::{forward_from, ip};
use super::namespace::NodeNamespace;

/// Joins the nodes' namespaces to one another; nothing to do for fewer than two.
pub(super) fn join(nodes: &[&NodeNamespace]) -> Result<(), NetworkError> {
    if nodes.len() < 2 {
        return Ok(());
    }
    for node in nodes {
        let mut routes = String::new();
        for other in nodes.iter().filter(|o| o.block() != node.block()) {
            routes.push_str(&format!(
                "route add {}/24 via {} dev eth0\n",
                super::namespace_address(other.block(), 0),
                node.host_address()
            ));
        }
        ip(Some(node.netns()), &routes)?;
        forward_from(node.host_link())?;
    }
    Ok(())
}
