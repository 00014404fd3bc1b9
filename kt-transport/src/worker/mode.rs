//! Worker mode: the user's own binary, started by a backend, hosting one actor.
//!
//! A backend starts the binary with `KT_WORKER=1` in its environment and writes a
//! [`WorkerConfig`] (the actor's type name, encoded constructor arguments, options, and
//! the worker's TLS identity) to its stdin. `#[kt::main]` (or [`serve_if_worker`] as the
//! first line of `main`, or `#[kt::test]` in test binaries) sees the variable and serves
//! instead of running the program: it builds the actor by type name from the registry,
//! dials the driver, reports in, and serves calls until the actor stops.
//!
//! A worker of an owned actor exits as soon as its driver is gone — its stdin pipe, which
//! only the driver holds open, reads end-of-file even when the driver was killed with
//! SIGKILL — so no orphan outlives its driver. A detached actor's worker ignores its
//! driver and lives until the actor is killed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kt_core::{DeathCause, ErasedActor, Error, Lifetime, SpawnOptions, registry};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::node::{Frames, Node, next_frame, own_frames};
use crate::wire::frame::{Frame, PROTOCOL_VERSION, encode_frame, max_message_bytes};
use crate::wire::tls::Identity;

/// How long a dialed worker of an owned actor waits for its driver to attach.
const ATTACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a worker that failed to start waits for its driver to read the report.
const REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The environment variable that puts a binary in worker mode.
pub const WORKER_ENV: &str = "KT_WORKER";

/// Set by a container backend: the directory (a mounted Secret) holding the worker's
/// config ([`CONFIG_FILE`]) and TLS identity ([`CA_FILE`], [`CERT_FILE`], [`KEY_FILE`]).
/// Without it the config comes on stdin.
pub const WORKER_DIR_ENV: &str = "KT_WORKER_DIR";
/// The worker's [`WorkerConfig`], MessagePack, in the worker directory.
pub const CONFIG_FILE: &str = "worker.msgpack";
/// The CA the worker trusts (PEM), in the worker directory.
pub const CA_FILE: &str = "ca.pem";
/// The worker's certificate (PEM), in the worker directory.
pub const CERT_FILE: &str = "tls.crt";
/// The worker's private key (PKCS#8 PEM), in the worker directory.
pub const KEY_FILE: &str = "tls.key";
/// The address a dialed worker listens on (a pod's IP, from the downward API); all
/// interfaces when unset.
pub const LISTEN_IP_ENV: &str = "POD_IP";

/// Everything a worker needs, sent on its stdin or in its worker directory (never
/// through the environment, which other users can read in `/proc`).
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The driver's protocol version.
    pub version: u16,
    /// Identifies this worker's hello to the driver.
    pub token: u64,
    /// The driver's node address, which the worker dials; `None` for a worker the driver
    /// dials (a pod the driver may not be reachable from).
    pub driver: Option<String>,
    /// The UDP port a dialed worker listens on.
    pub listen_port: u16,
    /// This worker's TLS identity, signed by the cluster CA (`None` when it is in files
    /// of the worker directory).
    pub identity: Option<Identity>,
    /// The registered type name of the actor to host.
    pub type_name: String,
    /// The MessagePack encoding of the constructor's arguments.
    pub args: Bytes,
    /// How to run the actor.
    pub options: SpawnOptions,
    /// Values handed down by name ([`super::inherit`]).
    #[serde(default)]
    pub inherited: Vec<(String, Bytes)>,
}

/// True when this process was started by a kt backend to host an actor.
pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// In worker mode, serves the actor this process was started for and exits; otherwise
/// returns at once. Call it first thing in `main` when not using `#[kt::main]`.
pub fn serve_if_worker() {
    if !is_worker() {
        return;
    }
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(async { runtime_worker().await });
            // Not a plain drop: that waits for the blocking pool, and one of its threads
            // may be parked reading the stdin pipe the driver holds open, so a released
            // worker would never exit (and never free its CPUs and GPUs) while its
            // driver lives.
            runtime.shutdown_background();
            code
        }
        Err(error) => {
            eprintln!("kt worker: could not start the tokio runtime: {error}");
            1
        }
    };
    std::process::exit(code);
}

async fn runtime_worker() -> i32 {
    let source = match std::env::var_os(WORKER_DIR_ENV) {
        Some(dir) => ConfigSource::Directory(dir.into()),
        None => ConfigSource::Stdin(tokio::io::stdin()),
    };
    match tokio::spawn(run_worker(source)).await {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => {
            eprintln!("kt worker: {error}");
            1
        }
        Err(join) => {
            eprintln!("kt worker: {join}");
            1
        }
    }
}

/// Reads one length-delimited config frame.
async fn read_config(stdin: &mut (impl AsyncRead + Unpin)) -> Result<WorkerConfig, Error> {
    let protocol = |e: std::io::Error| Error::Protocol {
        message: format!("reading the worker config: {e}"),
    };
    let len = stdin.read_u32().await.map_err(protocol)? as usize;
    if len > max_message_bytes() + 65536 {
        return Err(Error::MessageTooLarge {
            size: len,
            limit: max_message_bytes(),
        });
    }
    let mut body = vec![0u8; len];
    stdin.read_exact(&mut body).await.map_err(protocol)?;
    kt_core::codec::decode(&body, "the worker config")
}

/// The config as a worker directory holds it.
pub(crate) fn encode_config_body(config: &WorkerConfig) -> Result<Vec<u8>, Error> {
    kt_core::codec::encode(config, "the worker config")
}

/// Writes a config frame for a worker's stdin.
pub(crate) fn encode_config(config: &WorkerConfig) -> Result<Vec<u8>, Error> {
    let body = encode_config_body(config)?;
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Where a worker's config comes from.
enum ConfigSource {
    /// A pipe from the driver that started the process.
    Stdin(tokio::io::Stdin),
    /// Files a container backend mounted.
    Directory(std::path::PathBuf),
}

/// Reads the config and identity from the worker directory.
fn read_directory(dir: &std::path::Path) -> Result<(WorkerConfig, Identity), Error> {
    let read = |file: &str| {
        std::fs::read(dir.join(file)).map_err(|e| Error::Protocol {
            message: format!("reading {}: {e}", dir.join(file).display()),
        })
    };
    let config: WorkerConfig = kt_core::codec::decode(&read(CONFIG_FILE)?, "the worker config")?;
    let identity = Identity::from_pem(&read(CA_FILE)?, &read(CERT_FILE)?, &read(KEY_FILE)?)?;
    Ok((config, identity))
}

async fn run_worker(source: ConfigSource) -> Result<(), Error> {
    let (mut config, stdin) = match source {
        ConfigSource::Stdin(mut stdin) => (read_config(&mut stdin).await?, Some(stdin)),
        ConfigSource::Directory(dir) => {
            let (mut config, identity) = read_directory(&dir)?;
            config.identity = Some(identity);
            (config, None)
        }
    };
    if config.version != PROTOCOL_VERSION {
        return Err(Error::Protocol {
            message: format!("driver speaks version {}", config.version),
        });
    }
    let identity = config.identity.take().ok_or_else(|| Error::Protocol {
        message: "the worker config has no TLS identity".into(),
    })?;
    let node = match &config.driver {
        Some(_) => Node::install(&identity)?,
        None => {
            let ip = std::env::var(LISTEN_IP_ENV)
                .ok()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let node =
                Node::install_at(&identity, std::net::SocketAddr::new(ip, config.listen_port))?;
            // A driver outside the pod network comes through a port-forward, which carries
            // TCP only: QUIC over TCP on the same port.
            node.listen_tcp(node.address())?;
            node
        }
    };
    // A dialed worker takes its driver's attach from now on, while the actor is built.
    let attach = config
        .driver
        .is_none()
        .then(|| node.control().expect_attach(config.token));
    let detached = config.options.lifetime == Lifetime::Detached;
    // The driver published this process in the name directory; the entry goes with it.
    let _name_entry = config.options.name.clone().map(NameEntryOfThisProcess);
    let log_name = config.options.name.clone().filter(|_| detached);
    super::inherit::take_inheritance(&config.inherited)?;
    let spawned = registry::spawn_by_name(
        &config.type_name,
        Arc::from(config.args.to_vec()),
        config.options,
    )
    .await;
    let result = spawned
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|actor| node.export(actor));

    let (mut control, events) = match &config.driver {
        Some(driver) => {
            let address = driver.parse().map_err(|e| Error::Protocol {
                message: format!("bad driver address: {e}"),
            })?;
            let peer = node.peer(address).await?;
            let (control, events) = peer
                .conn
                .open_bi()
                .await
                .map_err(|e| unavailable(driver, e))?;
            (control, own_frames(events))
        }
        // Dialed: the driver opens the control stream with `Attach` and this token.
        None => {
            let attached = attach.ok_or_else(|| Error::Protocol {
                message: "a dialed worker without an attach".into(),
            })?;
            let waited = if detached {
                attached.await.ok()
            } else {
                // An owned actor whose driver never comes is an orphan: give up.
                tokio::time::timeout(ATTACH_TIMEOUT, attached)
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            let Some(attached) = waited else {
                return Err(Error::Unavailable {
                    target: "the driver".into(),
                    message: format!("it did not attach within {ATTACH_TIMEOUT:?}"),
                });
            };
            (attached.control, attached.events)
        }
    };
    let driver_name = config
        .driver
        .clone()
        .unwrap_or_else(|| "that attached".into());
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            token: config.token,
            result,
        },
        &mut buf,
    )?;
    control
        .write_all(&buf)
        .await
        .map_err(|e| unavailable(&driver_name, e))?;
    let Ok(owner) = spawned else {
        // Stay until the driver has read why (it closes the control stream), so that the
        // report is not lost with the process.
        control.finish().ok();
        let mut events = events;
        let _ = tokio::time::timeout(REPORT_GRACE, async {
            while let Some(Ok(_)) = next_frame(&mut events).await {}
        })
        .await;
        node.shutdown().await;
        return Ok(());
    };

    let released = node.control().on_release(owner.label().id);
    let gone = {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            driver_gone(events, stdin, log_name).await;
            tx.send_replace(true);
        });
        rx
    };
    // Resolves once the driver is gone (at once if it already is).
    let driver_gone = || {
        let mut gone = gone.clone();
        async move {
            let _ = gone.wait_for(|gone| *gone).await;
        }
    };
    let cause = if detached {
        // A detached actor outlives its driver.
        serve_until_end(owner, released, std::pin::pin!(std::future::pending())).await
    } else {
        serve_until_end(owner, released, std::pin::pin!(driver_gone())).await
    };
    let Some(cause) = cause else {
        // Nobody is left to read replies: exit at once.
        node.close_now();
        return Ok(());
    };
    buf.clear();
    if encode_frame(&Frame::Gone { cause }, &mut buf).is_ok() {
        let _ = control.write_all(&buf).await;
        let _ = control.finish();
        // Closing the endpoint discards unsent data: wait until the driver has read the
        // report, so it learns why and not only an exit code — unless it is gone.
        tokio::select! {
            _ = control.stopped() => {}
            () = driver_gone() => {
                node.close_now();
                return Ok(());
            }
            () = tokio::time::sleep(REPORT_GRACE) => {}
        }
    }
    tokio::select! {
        () = node.shutdown() => {}
        () = driver_gone() => node.close_now(),
    }
    Ok(())
}

/// Serves until the actor stops, and returns why — or `None` when the driver is gone
/// (the actor was then killed: an owned actor never outlives its driver).
async fn serve_until_end(
    owner: ErasedActor,
    released: tokio::sync::oneshot::Receiver<()>,
    mut driver_gone: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<DeathCause> {
    let stopped = owner.stopped();
    let handle = owner.without_ownership();
    tokio::pin!(stopped);
    let mut owner = Some(owner);
    let mut released = Some(released);
    loop {
        tokio::select! {
            cause = &mut stopped => return Some(cause),
            // The driver's last owning handle is gone: stop gracefully (queued calls
            // run, then on_stop) — still watching for the driver itself to vanish.
            outcome = async { released.as_mut()?.await.ok() }, if released.is_some() => {
                released = None;
                if outcome.is_some() {
                    owner = None;
                }
            }
            () = &mut driver_gone => {
                handle.kill();
                drop(owner);
                return None;
            }
        }
    }
}

/// Removes this process's entry from the name directory when the worker ends.
struct NameEntryOfThisProcess(String);

impl Drop for NameEntryOfThisProcess {
    fn drop(&mut self) {
        if let Ok(names) = crate::wire::directory::Names::open() {
            names.release(&self.0, std::process::id());
        }
    }
}

fn unavailable(driver: &str, error: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        target: format!("driver {driver}"),
        message: error.to_string(),
    }
}

/// Resolves when the driver is gone: its stdin pipe (held open only by the driver of a
/// local process) reads end-of-file, or its control stream ends. The output of a
/// detached local actor (named `detached_name`) then goes to its log file.
async fn driver_gone(
    events: Frames,
    stdin: Option<impl AsyncRead + Unpin>,
    detached_name: Option<String>,
) {
    let mut sink = [0u8; 256];
    let control_closed = async {
        let mut frames = events;
        while let Some(Ok(_)) = next_frame(&mut frames).await {}
    };
    let Some(mut stdin) = stdin else {
        // A dialed worker (a pod): the control stream is the only link, and the
        // container's output goes wherever the platform collects it.
        return control_closed.await;
    };
    if let Some(name) = detached_name {
        // Only the pipe counts: the control stream of a detached actor's worker may
        // outlive the driver's interest in it.
        while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
        // Nobody reads the pipes any more: writing to them would fail.
        crate::wire::directory::redirect_output_to_log(&name);
        return;
    }
    let stdin_closed = async { while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {} };
    tokio::select! {
        () = control_closed => {}
        () = stdin_closed => {}
    }
}
