//! One node as a host of its own: an unnamed network namespace joined to this machine by a
//! veth pair (`kte<block>` here, `eth0` there), the node's pod addresses on its `eth0`, and
//! a directory that every pod process of the node sees as `/dev/shm`.

use std::ffi::CString;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::ip::ip;
use super::{NetworkError, namespace_address};

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

/// A node's network namespace, its veth pair and its `/dev/shm` directory.
///
/// The namespace has no name (no `ip netns add`, which would pin it under `/run/netns`):
/// it lives while this emulator holds its descriptor or a pod process runs in it, so even
/// an emulator killed by SIGKILL leaves nothing behind once its pods are gone (the veth
/// pair goes with the namespace, and with the pair its routes and its forwarding setting).
pub(super) struct NodeNamespace {
    block: u16,
    host_link: String,
    isolation: Isolation,
    _shm_dir: tempfile::TempDir,
}

impl NodeNamespace {
    /// Makes the namespace of the node whose pods get `block`'s addresses.
    pub fn create(block: u16) -> Result<NodeNamespace, NetworkError> {
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
                block,
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

    /// The node's pod block.
    pub fn block(&self) -> u16 {
        self.block
    }

    /// This machine's end of the node's veth pair, on this machine's side.
    pub fn host_link(&self) -> &str {
        &self.host_link
    }

    /// This machine's address on the node's link.
    pub fn host_address(&self) -> Ipv4Addr {
        namespace_address(self.block, 254)
    }

    /// The node's network namespace, for running `ip` inside it.
    pub fn netns(&self) -> &File {
        &self.isolation.netns
    }

    /// What the node's pod processes enter.
    pub fn isolation(&self) -> Isolation {
        self.isolation.clone()
    }

    /// Deletes the veth pair (idempotent).
    pub fn tear_down(&self) {
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
