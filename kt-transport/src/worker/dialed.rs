//! Workers the driver dials: how a container backend (Kubernetes) starts an actor in a
//! process that the driver may not be reachable from.
//!
//! A local worker dials its driver back; a pod usually cannot (the driver may run on a
//! laptop outside the cluster). So the backend [`prepare`]s the worker — its config and
//! a TLS identity signed by the driver's CA, as files for a mounted Secret — starts it,
//! and once the worker listens, [`attach`]es: it dials the worker, opens the control
//! stream with an `Attach` frame carrying the worker's token, and reads the worker's
//! `Hello`. From there the actor behaves exactly like a local-process one: calls on
//! their own streams, `Release` behind the calls, the worker's `Gone` report, and death
//! causes the backend reports through a [`DeathReporter`] (the pod's status).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kt_core::backend::OwnerGuard;
use kt_core::{ErasedActor, Error, SpawnOptions};

pub use super::link::DeathReporter;
use super::mode::{WorkerConfig, encode_config_body};
use crate::node::{Node, Peer, RemoteRoute, next_frame, own_frames};
use crate::wire::frame::{Frame, PROTOCOL_VERSION, encode_frame};

/// The files of one dialed worker (see [`crate::worker::WORKER_DIR_ENV`]).
#[derive(Debug, Clone)]
pub struct WorkerFiles {
    /// The worker's config ([`crate::worker::CONFIG_FILE`]).
    pub config: Vec<u8>,
    /// The CA it trusts, PEM ([`crate::worker::CA_FILE`]).
    pub ca_pem: String,
    /// Its certificate, PEM ([`crate::worker::CERT_FILE`]).
    pub cert_pem: String,
    /// Its private key, PEM ([`crate::worker::KEY_FILE`]).
    pub key_pem: String,
}

/// A worker ready to be started: the token it expects its driver to attach with, and
/// its files.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What the driver attaches with.
    pub token: u64,
    /// What the worker reads at start.
    pub files: WorkerFiles,
}

/// Prepares a dialed worker for an actor of type `type_name`, built from `args`,
/// listening on UDP `listen_port`. Its identity is issued by this driver's CA.
pub async fn prepare(
    type_name: &str,
    args: Bytes,
    options: SpawnOptions,
    listen_port: u16,
) -> Result<Prepared, Error> {
    let node = Node::global()?;
    let ca = node.ca().ok_or_else(|| Error::WorkerStartFailed {
        type_name: type_name.to_string(),
        message: "only a driver process can start workers".into(),
    })?;
    let token = random_token()?;
    let (ca_pem, cert_pem, key_pem) = ca.issue(type_name)?.to_pem();
    let config = WorkerConfig {
        version: PROTOCOL_VERSION,
        token,
        driver: None,
        listen_port,
        identity: None,
        type_name: type_name.to_string(),
        args,
        options,
        inherited: super::inherit::inherited().await?,
    };
    Ok(Prepared {
        token,
        files: WorkerFiles {
            config: encode_config_body(&config)?,
            ca_pem,
            cert_pem,
            key_pem,
        },
    })
}

/// A token nobody can guess: a worker hands its actor only to the driver that knows it.
fn random_token() -> Result<u64, Error> {
    let mut bytes = [0u8; 8];
    crate::wire::tls::random_bytes(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// An actor in a dialed worker, as its backend holds it.
pub struct Attached {
    /// The route to the actor in this worker process: one incarnation, which a backend
    /// hands out as it is or supervised ([`crate::worker::supervision::supervised`]).
    pub route: Arc<RemoteRoute>,
    /// Tells waiting callers the actor died, when the backend learns why.
    pub death: DeathReporter,
}

impl Attached {
    /// A handle to this one incarnation: owning (its last drop releases the actor) or not.
    pub fn handle(&self, owned: bool) -> ErasedActor {
        let owner = owned.then(|| Arc::new(OwnerGuard::new(self.route.releaser())));
        ErasedActor::new(self.route.clone(), owner)
    }
}

/// Dials the worker at `worker`, attaches with `token` and returns the actor it hosts,
/// or fails with `Unavailable` when no connection is made within `within`. `killer` ends
/// the worker's process (deleting its pod) on `kill()`.
pub async fn attach(
    worker: SocketAddr,
    token: u64,
    killer: Option<Box<dyn Fn() + Send + Sync>>,
    within: Duration,
) -> Result<Attached, Error> {
    let node = Node::global()?;
    // A new worker: a connection cached for its address can only lead to an earlier
    // process there (pod IPs are reused), which is gone.
    node.forget_peer(worker);
    let attached = attach_on(&node, worker, token, killer, within).await;
    if attached.is_err() {
        // A connection cached for this address may lead to a process that is gone (pod
        // IPs are reused): the next attempt starts afresh.
        node.forget_peer(worker);
    }
    attached
}

async fn attach_on(
    node: &Arc<Node>,
    worker: SocketAddr,
    token: u64,
    killer: Option<Box<dyn Fn() + Send + Sync>>,
    within: Duration,
) -> Result<Attached, Error> {
    let unavailable = |message: String| Error::Unavailable {
        target: format!("worker {worker}"),
        message,
    };
    let peer = match tokio::time::timeout(within, node.peer(worker)).await {
        Ok(peer) => peer?,
        Err(_) => return Err(unavailable(format!("no connection within {within:?}"))),
    };
    // Connected: the worker answers its attach at once. Only a connection that broke
    // under it (or a worker that hangs) takes longer; then give up.
    match tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange(node, peer, worker, token, killer),
    )
    .await
    {
        Ok(attached) => attached,
        Err(_) => Err(unavailable(format!("no Hello within {EXCHANGE_TIMEOUT:?}"))),
    }
}

/// How long a connected worker may take to answer an attach.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `Attach` on a new control stream and reads the worker's `Hello`.
async fn exchange(
    node: &Arc<Node>,
    peer: Arc<Peer>,
    worker: SocketAddr,
    token: u64,
    killer: Option<Box<dyn Fn() + Send + Sync>>,
) -> Result<Attached, Error> {
    let unavailable = |message: String| Error::Unavailable {
        target: format!("worker {worker}"),
        message,
    };
    let (mut control, events) = peer
        .conn
        .open_bi()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame::Attach {
            version: PROTOCOL_VERSION,
            token,
        },
        &mut buf,
    )?;
    control
        .write_all(&buf)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut events = own_frames(events);
    let address = match next_frame(&mut events).await {
        Some(Ok(Frame::Hello { result, .. })) => result?,
        Some(Ok(Frame::Refused { error })) => return Err(error),
        Some(Ok(other)) => {
            return Err(Error::Protocol {
                message: format!("the worker answered an attach with {other:?}"),
            });
        }
        // The connection broke under the attach: the worker is not (or no longer) there.
        Some(Err(error)) => return Err(unavailable(error.to_string())),
        None => return Err(unavailable("the worker closed the control stream".into())),
    };
    let (route, death) = super::link::link(node, Some(worker), address, control, events, killer);
    Ok(Attached { route, death })
}
