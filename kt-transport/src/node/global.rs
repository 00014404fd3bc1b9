//! The process-wide state of the node layer: this process's one [`Node`], the runtime its
//! tasks run on, and the CA a backend asks the driver's node to use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kt_core::Error;

use super::{Node, lock};
use crate::wire::TransportError;
use crate::wire::tls::{ClusterCa, Identity};

static GLOBAL: Mutex<Option<Arc<Node>>> = Mutex::new(None);

/// The CA the driver's node is to use, when a backend brings one (see [`use_ca`]).
static DRIVER_CA: Mutex<Option<ClusterCa>> = Mutex::new(None);

static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Makes this driver's node use `ca` (a cluster's CA, shared with the workers a backend
/// starts there) instead of this user's machine CA. It must come before the node
/// starts, that is before the first spawn; a node already started with another CA is an
/// error, since its workers could not trust each other.
pub fn use_ca(ca: ClusterCa) -> Result<(), Error> {
    if let Some(node) = &*lock(&GLOBAL) {
        let same = node
            .ca()
            .is_some_and(|current| current.certificate_der() == ca.certificate_der());
        return if same {
            Ok(())
        } else {
            Err(Error::invalid_options(
                "this process's node already started with another CA: set up the \
                          cluster placement before the first spawn",
            ))
        };
    }
    *lock(&DRIVER_CA) = Some(ca);
    Ok(())
}

/// Tells the transport which runtime lives as long as the process (`#[kt::main]`'s, or the
/// runtime shared by `#[kt::test]`s), so the node's tasks run there. Without it the node
/// gets a runtime of its own on a background thread.
pub fn use_runtime(runtime: tokio::runtime::Handle) {
    let _ = RUNTIME.set(runtime);
}

/// The runtime the node's tasks run on: it must outlive every caller's runtime.
pub(super) fn node_runtime() -> Result<tokio::runtime::Handle, TransportError> {
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kt-node".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(error) => {
                    let _ = tx.send(Err(TransportError::Io(error.to_string())));
                }
            }
        })
        .map_err(|e| TransportError::Io(e.to_string()))?;
    let handle = rx.recv().map_err(|e| TransportError::Io(e.to_string()))??;
    Ok(RUNTIME.get_or_init(|| handle).clone())
}

impl Node {
    /// This process's node, started on first use as a driver: with this user's machine
    /// CA (see [`crate::wire::directory`]), so that other drivers on this machine trust
    /// its workers, or with a fresh session CA when the state directory cannot be used.
    pub fn global() -> Result<Arc<Node>, TransportError> {
        let mut global = lock(&GLOBAL);
        if let Some(node) = &*global {
            return Ok(node.clone());
        }
        let ca = match lock(&DRIVER_CA).take() {
            Some(ca) => ca,
            None => match crate::wire::directory::machine_ca() {
                Ok(ca) => ca,
                Err(error) => {
                    tracing::warn!("{error}; using a CA for this process only");
                    ClusterCa::generate()?
                }
            },
        };
        let identity = ca.issue("kt driver")?;
        let node = Node::start(&identity, Some(ca))?;
        *global = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node with an identity given by its driver (worker mode).
    pub fn install(identity: &Identity) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start(identity, None)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node on `bind` with an identity given by its driver (a
    /// worker the driver dials: a pod listening on its own IP).
    pub fn install_at(identity: &Identity, bind: SocketAddr) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start_at(identity, None, bind)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }
}
