//! Which processes share a host: the ones that can reach each other's abstract Unix
//! sockets, and so hand each other memory as file descriptors.
//!
//! Abstract sockets belong to a network namespace, so "the same host" means the same
//! boot and the same network namespace: two pods on one Kubernetes node have different
//! namespaces and talk over QUIC.

use std::sync::OnceLock;

/// This host and network namespace: the kernel's boot id and the namespace's inode.
/// Processes with equal values can reach each other's abstract Unix sockets.
pub fn this_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_else(|_| "unknown-boot".into());
        // The link reads `net:[4026531840]`.
        let netns = std::fs::read_link("/proc/self/ns/net")
            .map(|link| link.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-netns".into());
        format!("{boot}/{netns}")
    })
}

/// This host, network namespace and user: a peer with the same value can take the
/// descriptors this process passes (fd passing serves only peers of its own user).
pub fn this_host_and_user() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| format!("{}/uid {}", this_host(), rustix::process::getuid().as_raw()))
}

/// Set to `off` in a caller's environment to make it take every reply over QUIC, as a
/// caller on another host does (for measuring or diagnosing that path on one machine).
pub const SAME_HOST_ENV: &str = "KT_SAME_HOST";

/// What this process says of itself when it opens a call stream
/// ([`this_host_and_user`]), or `None` when [`SAME_HOST_ENV`] is `off`.
pub fn announced() -> Option<&'static str> {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var(SAME_HOST_ENV).map_or(true, |v| v != "off"));
    on.then(this_host_and_user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_names_the_boot_the_network_namespace_and_the_user() {
        assert!(this_host().contains("net:["), "{}", this_host());
        let with_user = this_host_and_user();
        assert!(
            with_user.starts_with(this_host()) && with_user.contains("/uid "),
            "{with_user}"
        );
    }
}
