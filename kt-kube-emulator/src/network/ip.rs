//! The ways the emulator changes the machine's network: iproute2's `ip` and `tc`, run in
//! this machine's namespace or a node's, and one per-link IPv4 setting under `/proc/sys`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::NetworkError;

/// Runs `ip -batch -` with `commands` on its stdin, inside `netns` if one is given.
pub(super) fn ip(netns: Option<&File>, commands: &str) -> Result<(), NetworkError> {
    batch("ip", netns, commands)
}

/// Runs `tc -batch -` (traffic control) with `commands`, inside `netns` if one is given.
pub(super) fn tc(netns: Option<&File>, commands: &str) -> Result<(), NetworkError> {
    batch("tc", netns, commands)
}

/// Runs iproute2's `program -batch -` with `commands` on its stdin, inside `netns` if one
/// is given.
fn batch(program: &str, netns: Option<&File>, commands: &str) -> Result<(), NetworkError> {
    let failed = |message: String| NetworkError {
        step: format!(
            "{program} -batch: {}",
            commands.lines().next().unwrap_or("")
        ),
        message,
    };
    let mut command = Command::new(program);
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
        .map_err(|e| failed(format!("cannot run {program}: {e}")))?;
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

/// Lets this machine forward IPv4 packets that arrive on `link` (in this process's
/// namespace). The setting belongs to the link, so it goes when the link is deleted; and
/// IPv4 decides forwarding by the interface a packet arrived on, so no machine-wide
/// setting (`net.ipv4.ip_forward`) is touched.
pub(super) fn forward_from(link: &str) -> Result<(), NetworkError> {
    let path = format!("/proc/sys/net/ipv4/conf/{link}/forwarding");
    std::fs::write(&path, b"1").map_err(|e| NetworkError {
        step: format!("writing 1 to {path}"),
        message: e.to_string(),
    })
}
