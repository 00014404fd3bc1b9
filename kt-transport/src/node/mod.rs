//! The node layer: this process's QUIC endpoint, serving the actors it exports and
//! holding its connections to other nodes.
//!
//! One UDP socket per process is both server and client, so a connection's remote
//! address is also the peer's listening address. The [`Node`] is a composition of parts
//! with one job each:
//!
//! | module | job |
//! |---|---|
//! | [`global`](self) (`global.rs`) | this process's node, its runtime, the CA a backend brings |
//! | `peer.rs` | connections to other nodes, and which route a large reply answers |
//! | `route/` | [`RemoteRoute`]: calls to one remote actor, in order, on one stream; its fate and pending calls (`state.rs`, `pending.rs`), how a call is put on the stream (`calls.rs`) |
//! | `writer.rs` | a stream's ordered outgoing bytes, written inline when the stream is idle |
//! | `serve/` | the serving side: call streams in, replies out; refusing bad streams |
//! | `attachments.rs` | large blobs of replies to callers on this host, as sealed memfds over a Unix socket |
//! | [`bulk`] | data-store values between hosts: chunked, verified, resumable bulk streams |
//! | `control.rs` | the worker-control rendezvous: hello, attach, release |
//! | `forward.rs` | QUIC over forwarded byte streams (port-forwards) |
//! | `handles.rs` | handles in messages become addresses on this node, and back |
//!
//! It builds on [`crate::wire`] only; worker mode and the placements build on it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use kt_core::handle_wire::HandleAddress;
use kt_core::{ErasedActor, Error};

use crate::wire::TransportError;
use crate::wire::tls::{ClusterCa, Identity};

mod attachments;
pub mod bulk;
mod control;
mod forward;
mod global;
mod handles;
mod peer;
mod route;
mod serve;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use control::{HelloStream, Rendezvous};
pub use global::{NODE_IP_ENV, use_address, use_ca, use_runtime};
pub(crate) use peer::Peer;
pub use route::RemoteRoute;
pub(crate) use route::{RouteState, watch_events};
pub(crate) use serve::{Frames, next_frame, own_frames};

/// Locks a mutex, carrying on with the data of a holder that panicked (plain tables).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// This process's endpoint.
pub struct Node {
    me: Weak<Node>,
    /// Where the node's own tasks run (see [`use_runtime`]).
    pub(crate) runtime: tokio::runtime::Handle,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    /// This node's identity, for the stream path's own TLS configs.
    identity: Identity,
    address: SocketAddr,
    ca: Option<ClusterCa>,
    /// The actors this node serves, by id.
    exports: Mutex<HashMap<u64, ErasedActor>>,
    /// Routes to remote actors, shared by every handle of this process to one actor.
    routes: Mutex<HashMap<(String, u64), Weak<RemoteRoute>>>,
    peers: peer::Peers,
    forwarding: forward::Forwarding,
    control: Rendezvous,
    drain: serve::Drain,
    /// Blobs of replies waiting for their callers on this host.
    attachments: Arc<attachments::Attachments>,
}

impl Node {
    /// Starts a node on loopback with `identity`; `ca` lets it issue identities to workers.
    pub fn start(identity: &Identity, ca: Option<ClusterCa>) -> Result<Arc<Node>, TransportError> {
        Node::start_at(identity, ca, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts a node on `bind` with `identity`; `ca` lets it issue identities to workers.
    pub fn start_at(
        identity: &Identity,
        ca: Option<ClusterCa>,
        bind: SocketAddr,
    ) -> Result<Arc<Node>, TransportError> {
        let runtime = global::node_runtime()?;
        let _in_runtime = runtime.enter();
        let mut endpoint = quinn::Endpoint::server(identity.server_config()?, bind)
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let client_config = identity.client_config()?;
        endpoint.set_default_client_config(client_config.clone());
        let address = endpoint
            .local_addr()
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            runtime: runtime.clone(),
            endpoint,
            client_config,
            identity: identity.clone(),
            address,
            ca,
            exports: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            peers: Default::default(),
            forwarding: Default::default(),
            control: Default::default(),
            drain: Default::default(),
            attachments: Default::default(),
        });
        let acceptor = node.clone();
        let incoming = node.endpoint.clone();
        runtime.spawn(async move { acceptor.accept_loop(incoming).await });
        Ok(node)
    }

    /// The address other processes reach this node at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The runtime this node's tasks run on: it lives as long as the process, so
    /// services that must outlive a caller's runtime (the data store's socket) run there.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The session CA, on a driver.
    pub(crate) fn ca(&self) -> Option<&ClusterCa> {
        self.ca.as_ref()
    }

    /// The worker-control rendezvous of this node.
    pub(crate) fn control(&self) -> &Rendezvous {
        &self.control
    }

    fn arc(&self) -> Result<Arc<Node>, Error> {
        self.me.upgrade().ok_or(Error::NoRuntime)
    }

    /// Makes `actor` reachable from other processes and returns its address. The entry
    /// does not keep the actor alive and goes away when the actor stops.
    pub fn export(&self, actor: &ErasedActor) -> Result<HandleAddress, Error> {
        let label = actor.label().clone();
        let mut exports = lock(&self.exports);
        if !exports.contains_key(&label.id) {
            exports.insert(label.id, actor.without_ownership());
            let node = self.me.clone();
            let stopped = actor.stopped();
            let id = label.id;
            self.runtime.spawn(async move {
                stopped.await;
                if let Some(node) = node.upgrade() {
                    lock(&node.exports).remove(&id);
                }
            });
        }
        Ok(HandleAddress {
            node: self.address.to_string(),
            label,
        })
    }

    pub(crate) fn exported(&self, actor_id: u64) -> Option<ErasedActor> {
        lock(&self.exports).get(&actor_id).cloned()
    }

    /// A handle to the actor at `address`: the local actor itself if this node serves it,
    /// otherwise a route over QUIC (shared with other handles to the same actor).
    pub fn import(&self, address: HandleAddress) -> Result<ErasedActor, Error> {
        if address.node == self.address.to_string()
            && let Some(local) = self.exported(address.label.id)
        {
            return Ok(local);
        }
        let key = (address.node.clone(), address.label.id);
        let mut routes = lock(&self.routes);
        if let Some(route) = routes.get(&key).and_then(Weak::upgrade) {
            return Ok(ErasedActor::new(route, None));
        }
        let route = RemoteRoute::new(self.arc()?, address, false, None);
        routes.retain(|_, weak| weak.strong_count() > 0);
        routes.insert(key, Arc::downgrade(&route));
        Ok(ErasedActor::new(route, None))
    }

    /// A (non-owning) handle to the actor at `address` whose `kill()` runs `killer`
    /// instead of asking the actor's node: for a backend that ends the actor's process
    /// itself (deleting its pod, say).
    pub fn import_with_killer(
        &self,
        address: HandleAddress,
        killer: Box<dyn Fn() + Send + Sync>,
    ) -> Result<ErasedActor, Error> {
        let route = RemoteRoute::new(self.arc()?, address, false, Some(killer));
        Ok(ErasedActor::new(route, None))
    }

    /// Closes the endpoint after finishing every call stream (each caller has read its
    /// replies to the end), bounded to a few seconds.
    pub async fn shutdown(&self) {
        self.drain.drain_within(Duration::from_secs(3)).await;
        self.endpoint.close(quinn::VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Closes the endpoint at once, dropping whatever is unsent.
    pub fn close_now(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(1), b"driver gone");
    }
}
