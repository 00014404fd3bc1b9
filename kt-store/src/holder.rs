//! Who holds a value's bytes: a process, named by where to reach it.
//!
//! Across hosts a holder is reached through its QUIC node (mutual TLS, like every kt
//! connection); on its own host also through a Unix socket in the abstract namespace,
//! over which it passes sealed memfds. Abstract sockets belong to a network namespace,
//! so "same host" means the same boot and the same network namespace: two pods on one
//! node have different namespaces and use QUIC.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A process that holds values, as the directory records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HolderAddress {
    /// Its kt node (QUIC) address.
    pub node: String,
    /// Its host and network namespace (boot id and network-namespace inode).
    pub host: String,
    /// Its abstract Unix socket name, for getters on the same host.
    pub socket: Option<String>,
    /// Its process id, for messages.
    pub pid: u32,
}

impl HolderAddress {
    /// True when `self` can be reached over its Unix socket from this process (and
    /// [`SAME_HOST_ENV`] does not turn that path off).
    pub fn on_this_host(&self) -> bool {
        same_host_path() && self.socket.is_some() && self.host == this_host()
    }

    #[cfg(test)]
    pub(crate) fn for_tests(n: u16) -> HolderAddress {
        HolderAddress {
            node: format!("127.0.0.1:{n}"),
            host: "test".into(),
            socket: None,
            pid: u32::from(n),
        }
    }
}

impl fmt::Display for HolderAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} at {}", self.pid, self.node)
    }
}

/// Set to `off` in a process's environment to make it fetch every value over QUIC, as a
/// getter on another host does (for measuring or diagnosing that path on one machine); it
/// then passes no memfds either (getters on its host fetch its values over QUIC too).
pub const SAME_HOST_ENV: &str = "KT_STORE_SAME_HOST";

pub(crate) fn same_host_path() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(SAME_HOST_ENV).map_or(true, |v| v != "off"))
}

pub use kt_transport::wire::host::this_host;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_names_the_boot_and_the_network_namespace() {
        let host = this_host();
        assert!(host.contains("net:["), "{host}");
        let mut holder = HolderAddress::for_tests(1);
        assert!(!holder.on_this_host(), "no socket");
        holder.socket = Some("kt-store-1".into());
        assert!(!holder.on_this_host(), "another host");
        holder.host = host.to_string();
        assert!(holder.on_this_host());
    }
}
