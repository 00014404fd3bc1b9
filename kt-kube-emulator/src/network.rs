//! The emulated node's pod network: which addresses pods get, and where their processes
//! run.
//!
//! In [`PodNetwork::SharedLoopback`] pods share the host's network namespace, each on a
//! loopback address `127.B.C.N` of the emulator's block ([`IpBlock`]). In
//! [`PodNetwork::NodeNamespace`] the node is a host of its own: an unnamed network
//! namespace joined to this machine by a veth pair (`kte<block>` here, `eth0` there), pods on `198.18.X.N` (RFC 2544's benchmarking range, never routed), this
//! machine on `198.18.X.254`; every pod process also gets a mount namespace whose
//! `/dev/shm` is the node's own directory. Loopback addresses and shared memory then do
//! not cross between the node and the host, as on a real cluster.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::ipblock::IpBlock;

/// Where the emulated node's pods live on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PodNetwork {
    /// Pods share this machine's network namespace (and `/dev/shm`), each on its own
    /// loopback IP `127.B.C.N`. Fast and needs no privileges; but a server bound to
    /// `127.0.0.1` on the host is reachable from pods, which a real cluster never allows.
    #[default]
    SharedLoopback,
    /// The node's pods run in a network namespace of the node's own, joined to this
    /// machine by a veth pair: pods get `198.18.X.N`, this machine `198.18.X.254`
    /// ([`Emulator::host_address`](crate::Emulator::host_address)), and each pod process a
    /// `/dev/shm` of the node's. Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and
    /// iproute2's `ip`.
    NodeNamespace,
}

/// Why the node's network namespace could not be made.
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

/// The node's pod network, made for one emulator and undone when it is dropped.
pub(crate) struct Network {
    block: IpBlock,
    namespace: Option<NodeNamespace>,
}

impl Network {
    /// Claims a free block and, for [`PodNetwork::NodeNamespace`], makes the namespace.
    pub fn create(kind: PodNetwork, first_block: [u8; 2]) -> Result<Network, crate::EmulatorError> {
        let limit = match kind {
            PodNetwork::SharedLoopback => u16::MAX,
            PodNetwork::NodeNamespace => NAMESPACE_BLOCKS - 1,
        };
        let block = IpBlock::claim(first_block, limit).map_err(crate::EmulatorError::PodIpBlock)?;
        let namespace = match kind {
            PodNetwork::SharedLoopback => None,
            PodNetwork::NodeNamespace => Some(NodeNamespace::create(block.index())?),
        };
        Ok(Network { block, namespace })
    }

    /// Pod address `n` (1..=253).
    pub fn pod_address(&self, n: u8) -> Ipv4Addr {
        match &self.namespace {
            None => self.block.loopback_address(n),
            Some(_) => namespace_address(self.block.index(), n),
        }
    }

    /// The first pod address not in `taken`, if any is left.
    pub fn free(&self, taken: &[String]) -> Option<Ipv4Addr> {
        (1..=253)
            .map(|n| self.pod_address(n))
            .find(|ip| !taken.iter().any(|t| *t == ip.to_string()))
    }

    /// The address pods reach this machine at.
    pub fn host_address(&self) -> Ipv4Addr {
        match &self.namespace {
            None => Ipv4Addr::LOCALHOST,
            Some(_) => namespace_address(self.block.index(), 254),
        }
    }

    /// What a pod process must enter before it runs, if anything.
    pub fn isolation(&self) -> Option<Isolation> {
        self.namespace.as_ref().map(|ns| ns.isolation.clone())
    }

    /// Removes the namespace and its link (idempotent; pods must be gone first).
    pub fn tear_down(&self) {
        if let Some(ns) = &self.namespace {
            ns.tear_down();
        }
    }
}

/// `198.18.0.0 + block × 256 + n`.
fn namespace_address(block: u16, n: u8) -> Ipv4Addr {
    let [hi, lo] = block.to_be_bytes();
    Ipv4Addr::new(198, 18 + (hi & 1), lo, n)
}

/// The namespaces a pod process joins: the node's network namespace (held open), and a
/// directory bind-mounted on `/dev/shm` in a mount namespace of the process's own.
#[derive(Clone)]
pub(crate) struct Isolation {
    netns: Arc<File>,
    shm: Arc<CString>,
}

impl Isolation {
    /// Enters the node's namespaces. Runs in the forked child before `exec`: only
    /// async-signal-safe system calls, no allocation.
    pub fn enter(&self) -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let none = std::ptr::null();
        // SAFETY: plain system calls on a descriptor and strings that outlive the child's
        // copy of this memory; each reports failure through errno.
        unsafe {
            check(libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Private first, so that the bind mount below stays in this process.
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                self.shm.as_ptr(),
                c"/dev/shm".as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ))
        }
    }
}

/// The node's network namespace, its veth pair and its `/dev/shm` directory.
///
/// The namespace has no name (no `ip netns add`, which would pin it under `/run/netns`):
/// it lives while this emulator holds its descriptor or a pod process runs in it, so even
/// an emulator killed by SIGKILL leaves nothing behind once its pods are gone (the veth
/// pair goes with the namespace).
struct NodeNamespace {
    host_link: String,
    isolation: Isolation,
    _shm_dir: tempfile::TempDir,
}

impl NodeNamespace {
    fn create(block: u16) -> Result<NodeNamespace, NetworkError> {
        let host_link = format!("kte{block}");
        // A link of this name outlives its emulator only while a pod of that emulator
        // still runs; the block's claim proves that no living emulator uses it.
        let _ = ip(None, &format!("link del {host_link}\n"));
        let netns = new_network_namespace()?;
        let host = namespace_address(block, 254);
        // Made inside the node's namespace, the pair's other end moved out to this
        // process's namespace.
        let mut inside = format!(
            "link add eth0 type veth peer name {host_link} netns {}\n\
             link set lo up\n\
             link set eth0 up\n",
            std::process::id()
        );
        for n in 1..=253 {
            inside.push_str(&format!(
                "addr add {}/24 dev eth0\n",
                namespace_address(block, n)
            ));
        }
        let made = ip(Some(&netns), &inside)
            .and_then(|()| {
                ip(
                    None,
                    &format!("addr add {host}/24 dev {host_link}\nlink set {host_link} up\n"),
                )
            })
            .and_then(|()| shm_directory());
        match made {
            Ok((shm_dir, shm)) => Ok(NodeNamespace {
                host_link,
                isolation: Isolation {
                    netns: Arc::new(netns),
                    shm: Arc::new(shm),
                },
                _shm_dir: shm_dir,
            }),
            Err(error) => {
                let _ = ip(None, &format!("link del {host_link}\n"));
                Err(error)
            }
        }
    }

    fn tear_down(&self) {
        // Deleting one end of the pair deletes both; the namespace itself goes once
        // nothing holds it (this emulator's descriptor goes with the `Isolation`s).
        let _ = ip(None, &format!("link del {}\n", self.host_link));
    }
}

impl Drop for NodeNamespace {
    fn drop(&mut self) {
        self.tear_down();
    }
}

/// A new, unnamed network namespace, held by the returned descriptor. A thread of its
/// own moves into it (`unshare` changes only the calling thread's namespace) and ends.
fn new_network_namespace() -> Result<File, NetworkError> {
    let failed = |message: String| NetworkError {
        step: "making a network namespace".into(),
        message,
    };
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this short-lived thread, which does nothing else.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        File::open("/proc/thread-self/ns/net")
    })
    .join()
    .map_err(|_| failed("the thread making it panicked".into()))?
    .map_err(|e| failed(e.to_string()))
}

/// The node's `/dev/shm`: a fresh directory, and its path for `mount`.
fn shm_directory() -> Result<(tempfile::TempDir, CString), NetworkError> {
    let shm_dir = tempfile::Builder::new()
        .prefix("kt-emu-shm-")
        .tempdir()
        .map_err(|e| NetworkError {
            step: "making the node's /dev/shm directory".into(),
            message: e.to_string(),
        })?;
    let shm =
        CString::new(shm_dir.path().as_os_str().as_encoded_bytes()).map_err(|e| NetworkError {
            step: "naming the node's /dev/shm directory".into(),
            message: e.to_string(),
        })?;
    Ok((shm_dir, shm))
}

/// Runs `ip -batch -` with `commands` on its stdin, inside `netns` if one is given.
fn ip(netns: Option<&File>, commands: &str) -> Result<(), NetworkError> {
    let failed = |message: String| NetworkError {
        step: format!("ip -batch: {}", commands.lines().next().unwrap_or("")),
        message,
    };
    let mut command = Command::new("ip");
    command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(netns) = netns {
        let fd = netns.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the descriptor stays open in the child
        // until exec (it is close-on-exec).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
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
}
