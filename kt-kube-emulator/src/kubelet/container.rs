//! One container: pull (or fail to), start the process, probe readiness, wait for it to
//! exit or be stopped, and restart by the pod's policy with CrashLoopBackOff back-off.
//! It reports every state change to its pod's task, which owns the pod's status.

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use super::logs::ContainerLog;
use super::process::OnNode;
use crate::cluster::Cluster;
use crate::time;

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// A readiness probe the emulator runs.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// Ready while the command exits 0.
    Exec(Vec<String>),
    /// Ready while a TCP connection to the pod IP on this port succeeds.
    Tcp(u16),
    /// Ready while `GET path` on this port answers 2xx or 3xx.
    Http(u16, String),
}

/// A container ready to run: everything resolved against the pod.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub name: String,
    pub image: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub probe: Option<Probe>,
}

/// How one run of the process ended.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
    /// The process could not be started at all (`StartError`).
    pub start_error: Option<String>,
}

/// What a container tells its pod.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Waiting {
        reason: String,
        message: String,
    },
    Started {
        pgid: i32,
        at: String,
    },
    Ready(bool),
    Exited(Exit),
    /// No further restarts will happen.
    Done,
}

/// Everything a container task needs.
pub(crate) struct Context {
    pub index: usize,
    pub spec: Prepared,
    pub policy: RestartPolicy,
    pub pod_ip: Ipv4Addr,
    /// `name_namespace(uid)`, as the kubelet names a pod in back-off messages.
    pub pod_label: String,
    /// The pod's name (the container's `HOSTNAME`).
    pub pod_name: String,
    pub cluster: Arc<Cluster>,
    /// Where the container's processes (and exec probes) start: its pod's node.
    pub processes: OnNode,
    pub log: Arc<ContainerLog>,
    pub updates: mpsc::UnboundedSender<(usize, Update)>,
    /// `Some(grace)` once the container must stop for good.
    pub stop: watch::Receiver<Option<Duration>>,
}

/// A duration the way Go prints it in kubelet messages (`100ms`, `1s`, `2.5s`).
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 {
            format!("{s:.0}s")
        } else {
            format!("{s}s")
        }
    }
}

fn exit_of(status: Option<ExitStatus>) -> (i32, Option<i32>) {
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        },
        // Reaped by someone else (emulator shutdown): report it as killed.
        None => (137, Some(libc::SIGKILL)),
    }
}

impl Context {
    fn send(&self, update: Update) {
        // The pod task outlives its containers; a closed channel means the emulator stops.
        let _ = self.updates.send((self.index, update));
    }

    /// Waits `d` unless a stop comes first; true if stopped.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.stop.wait_for(Option::is_some) => true,
        }
    }

    fn stopping(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Reports pull failures until the image is no longer listed as missing; true if stopped.
    async fn pull(&mut self) -> bool {
        let image = self.spec.image.clone();
        let backoff = self.cluster.config.image_pull_backoff;
        while self.cluster.faults.image_missing(&image) {
            let reference = format!("{image}: not found");
            self.send(Update::Waiting {
                reason: "ErrImagePull".into(),
                message: format!(
                    "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {reference}"
                ),
            });
            if self.sleep_or_stop(backoff).await {
                return true;
            }
            self.send(Update::Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\""),
            });
            if self.sleep_or_stop(backoff).await {
                return true;
            }
        }
        false
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear();
        for name in &self.cluster.config.inherited_env {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        // The container runtime sets HOSTNAME to the pod's name; the pod's own env wins.
        cmd.env("HOSTNAME", &self.pod_name);
        cmd.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.spec.working_dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// One run of the process. Returns how it ended and whether a stop ended it.
    async fn run_once(&mut self) -> (Exit, bool) {
        let instance = self.log.begin();
        let started_at = time::now();
        let spawned = match self.spec.argv.first() {
            None => Err(std::io::Error::other(
                "the emulator runs only containers with a command (an absolute path on this machine)",
            )),
            Some(_) => self.processes.spawn(&mut self.command(&self.spec.argv)),
        };
        let (mut child, group) = match spawned {
            Ok(pair) => pair,
            Err(e) => {
                self.log.close(instance);
                let exit = Exit {
                    code: 128,
                    signal: None,
                    started_at: started_at.clone(),
                    finished_at: time::now(),
                    start_error: Some(format!(
                        "failed to create containerd task: failed to start {:?}: {e}",
                        self.spec.argv.first().cloned().unwrap_or_default()
                    )),
                };
                return (exit, false);
            }
        };
        self.send(Update::Started {
            pgid: group.pgid(),
            at: started_at.clone(),
        });
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let log = self.log.clone();
            readers.push(tokio::spawn(async move {
                let mut pipe = pipe;
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.append(instance, &buf[..n]);
                }
            }));
        }
        let prober = match self.spec.probe.clone() {
            None => {
                self.send(Update::Ready(true));
                None
            }
            Some(probe) => Some(tokio::spawn(probe_loop(
                probe,
                self.pod_ip,
                self.command_template(),
                self.cluster.config.probe_period,
                self.processes.clone(),
                self.updates.clone(),
                self.index,
            ))),
        };
        // The select only decides; the kill sequence runs after it so that no watch guard
        // is held across an await.
        let outcome = tokio::select! {
            status = child.wait() => Ok(status.ok()),
            grace = self.stop.wait_for(Option::is_some) => Err(grace.ok().and_then(|g| *g).unwrap_or_default()),
        };
        let stopped = outcome.is_err();
        let status = match outcome {
            Ok(status) => status,
            Err(grace) => {
                group.signal(libc::SIGTERM);
                match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        group.signal(libc::SIGKILL);
                        child.wait().await.ok()
                    }
                }
            }
        };
        if let Some(p) = prober {
            p.abort();
        }
        self.send(Update::Ready(false));
        // Kills what the leader left behind in its group, which closes the pipes.
        drop(group);
        for r in readers {
            // Bounded: a grandchild that left the group could hold a pipe open forever.
            let _ = tokio::time::timeout(Duration::from_secs(1), r).await;
        }
        self.log.close(instance);
        let (code, signal) = exit_of(status);
        let exit = Exit {
            code,
            signal,
            started_at,
            finished_at: time::now(),
            start_error: None,
        };
        (exit, stopped || self.stopping().is_some())
    }

    /// The environment and directory probes run with (an exec probe runs "in" the container).
    fn command_template(&self) -> (Vec<(String, String)>, Option<PathBuf>) {
        (self.spec.env.clone(), self.spec.working_dir.clone())
    }
}

/// Runs a readiness probe every `period`, reporting changes.
async fn probe_loop(
    probe: Probe,
    pod_ip: Ipv4Addr,
    (env, dir): (Vec<(String, String)>, Option<PathBuf>),
    period: Duration,
    processes: OnNode,
    updates: mpsc::UnboundedSender<(usize, Update)>,
    index: usize,
) {
    let mut last = None;
    loop {
        let ok = match &probe {
            Probe::Exec(argv) if !argv.is_empty() => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)));
                if let Some(p) = std::env::var_os("PATH") {
                    cmd.env("PATH", p);
                }
                if let Some(d) = &dir {
                    cmd.current_dir(d);
                }
                match processes.spawn(&mut cmd) {
                    Ok((mut child, _group)) => {
                        matches!(tokio::time::timeout(Duration::from_secs(1), child.wait()).await, Ok(Ok(s)) if s.success())
                    }
                    Err(_) => false,
                }
            }
            Probe::Exec(_) => false,
            Probe::Tcp(port) => {
                let connect = tokio::net::TcpStream::connect((pod_ip, *port));
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), connect).await,
                    Ok(Ok(_))
                )
            }
            Probe::Http(port, path) => http_ok(pod_ip, *port, path).await,
        };
        if last != Some(ok) {
            last = Some(ok);
            if updates.send((index, Update::Ready(ok))).is_err() {
                return;
            }
        }
        // Probing is periodic polling by definition (the kubelet does the same).
        tokio::time::sleep(period).await;
    }
}

async fn http_ok(ip: Ipv4Addr, port: u16, path: &str) -> bool {
    use tokio::io::AsyncWriteExt;
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.33\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        let code: u16 = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

/// The container's whole life.
pub(crate) async fn run(mut ctx: Context) {
    let mut quick_failures = 0u32;
    loop {
        if ctx.stopping().is_some() || ctx.pull().await {
            break;
        }
        let started = Instant::now();
        let (exit, stopped) = ctx.run_once().await;
        let code = exit.code;
        ctx.send(Update::Exited(exit));
        if stopped {
            break;
        }
        match ctx.policy {
            RestartPolicy::Never => break,
            RestartPolicy::OnFailure if code == 0 => break,
            _ => {}
        }
        if started.elapsed() < ctx.cluster.config.crash_loop_threshold {
            quick_failures += 1;
        } else {
            quick_failures = 0;
        }
        // The first quick failure restarts at once; later ones wait, doubling each time.
        if quick_failures >= 2 {
            let config = &ctx.cluster.config;
            let factor = 1u32.checked_shl(quick_failures - 2).unwrap_or(u32::MAX);
            let delay = config
                .restart_backoff
                .saturating_mul(factor)
                .min(config.max_restart_backoff);
            let message = format!(
                "back-off {} restarting failed container={} pod={}",
                go_duration(delay),
                ctx.spec.name,
                ctx.pod_label
            );
            ctx.send(Update::Waiting {
                reason: "CrashLoopBackOff".into(),
                message,
            });
            if ctx.sleep_or_stop(delay).await {
                break;
            }
        }
    }
    ctx.send(Update::Done);
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn go_style_durations() {
        assert_eq!(go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
    }
}
