//! Container processes: each runs in its own process group so that a signal reaches
//! everything it started, and every live group is registered so that stopping the emulator
//! (or dropping it during a panic) kills and reaps all of them.

use std::collections::HashSet;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::network::Isolation;

#[derive(Default)]
struct Registry {
    stopped: bool,
    live: HashSet<i32>,
}

/// Every process group the emulator has started and not yet reaped, on every node.
#[derive(Default)]
pub(crate) struct Processes {
    inner: Mutex<Registry>,
}

/// Starts processes on one node: registered with the kubelet's [`Processes`], each entering
/// the node's namespaces first, if the node has any.
#[derive(Clone)]
pub(crate) struct OnNode {
    processes: Arc<Processes>,
    isolation: Option<Isolation>,
}

impl OnNode {
    /// Starts `command` on the node (see [`Processes::spawn`]).
    pub fn spawn(&self, command: &mut Command) -> io::Result<(Child, GroupGuard)> {
        self.processes.spawn(command, self.isolation.as_ref())
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a stale id yields ESRCH, which is ignored.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

impl Processes {
    /// Where a node's processes start: they enter `isolation` first, if any.
    pub fn on_node(self: &Arc<Self>, isolation: Option<Isolation>) -> OnNode {
        OnNode {
            processes: self.clone(),
            isolation,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `command` as the leader of a new process group, with piped stdout/stderr,
    /// inside `isolation` if given. Registration happens under the same lock as the stop
    /// check, so no process can start after [`kill_all`](Self::kill_all) has begun.
    fn spawn(
        self: &Arc<Self>,
        command: &mut Command,
        isolation: Option<&Isolation>,
    ) -> io::Result<(Child, GroupGuard)> {
        command
            .process_group(0)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. It makes the kernel kill the child if the
        // emulator's thread dies without cleaning up (a test killed by SIGKILL).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        if let Some(isolation) = isolation.cloned() {
            // SAFETY: `enter` makes only async-signal-safe system calls (see there).
            unsafe {
                command.pre_exec(move || isolation.enter());
            }
        }
        let mut registry = self.lock();
        if registry.stopped {
            return Err(io::Error::other("the emulator is shutting down"));
        }
        let child = command.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the child exited before it could be registered"))?;
        registry.live.insert(pgid);
        Ok((
            child,
            GroupGuard {
                pgid,
                processes: self.clone(),
            },
        ))
    }

    /// Kills every registered group with SIGKILL and reaps the leaders; refuses new spawns.
    pub fn kill_all(&self) {
        let live: Vec<i32> = {
            let mut registry = self.lock();
            registry.stopped = true;
            registry.live.drain().collect()
        };
        for &pgid in &live {
            signal_group(pgid, libc::SIGKILL);
        }
        // Reap here rather than trusting the async runtime, which may already be shutting
        // down. ECHILD means someone (tokio) reaped it first. Bounded: SIGKILL cannot be
        // ignored, so this ends at once unless the kernel is very slow.
        let deadline = Instant::now() + Duration::from_secs(2);
        for pid in live {
            loop {
                let mut status = 0;
                // SAFETY: waitpid on our own child's pid with WNOHANG never blocks.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r != 0 || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Owns one process group: dropping it SIGKILLs the group (stray grandchildren included).
pub(crate) struct GroupGuard {
    pgid: i32,
    processes: Arc<Processes>,
}

impl GroupGuard {
    /// The group id (the leader's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Sends `signal` to every process of the group.
    pub fn signal(&self, signal: i32) {
        signal_group(self.pgid, signal);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        self.processes.lock().live.remove(&self.pgid);
    }
}

/// Sends `signal` to a process group by id (used by failure injection).
pub(crate) fn kill_group(pgid: i32, signal: i32) {
    signal_group(pgid, signal);
}
