//! Connections to other nodes: one [`Peer`] per connection, and the routes whose calls
//! wait on it.
//!
//! Calls go out on connections this node opens itself ([`Node::peer`]); connections
//! other nodes open are served ([`super::serve`]) but not reused for calls, so each
//! connection carries streams opened by its client only.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use futures_util::StreamExt;
use kt_core::Error;
use kt_core::backend::KeptReply;
use tokio::sync::OnceCell;

use super::route::RouteState;
use super::{Node, lock};
use crate::wire::budget::{ConnectionBudget, connection_bytes};
use crate::wire::frame::{Frame, decode_frame, max_message_bytes};
use crate::wire::tls::SERVER_NAME;

/// The connections this node opened, by peer address.
#[derive(Default)]
pub(crate) struct Peers {
    connections: Mutex<HashMap<SocketAddr, Arc<OnceCell<Arc<Peer>>>>>,
    /// For a node on loopback: a client-only endpoint on all interfaces, made on first
    /// use, for peers elsewhere (pods). It accepts nothing.
    outbound: OnceLock<quinn::Endpoint>,
}

impl Node {
    /// The connection to the node at `address`, made on first use.
    pub(crate) async fn peer(&self, address: SocketAddr) -> Result<Arc<Peer>, Error> {
        let cell = {
            let mut peers = lock(&self.peers.connections);
            let cell = peers.entry(address).or_default();
            if cell
                .get()
                .is_some_and(|peer| peer.conn.close_reason().is_some())
            {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let unavailable = |message: String| Error::Unavailable {
            target: format!("node {address}"),
            message,
        };
        let peer = cell
            .get_or_try_init(|| async {
                let connecting = match self.forwarding.via(address) {
                    Some(via) => self.stream_endpoint()?.connect(via, SERVER_NAME),
                    None => self.endpoint_for(address)?.connect(address, SERVER_NAME),
                }
                .map_err(|e| unavailable(e.to_string()))?;
                let conn = connecting.await.map_err(|e| unavailable(e.to_string()))?;
                Ok::<_, Error>(Peer::new(self.arc()?, conn))
            })
            .await?;
        Ok(peer.clone())
    }

    /// The endpoint to reach `address` from: this node's own, unless it is on loopback and
    /// the peer is not (a socket bound to 127.0.0.1 cannot send elsewhere).
    fn endpoint_for(&self, address: SocketAddr) -> Result<&quinn::Endpoint, Error> {
        if !self.address.ip().is_loopback() || address.ip().is_loopback() {
            return Ok(&self.endpoint);
        }
        if let Some(outbound) = self.peers.outbound.get() {
            return Ok(outbound);
        }
        let _in_runtime = self.runtime.enter();
        let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let mut outbound = quinn::Endpoint::client(bind).map_err(|e| Error::Unavailable {
            target: format!("node {address}"),
            message: format!("cannot open an outbound socket: {e}"),
        })?;
        outbound.set_default_client_config(self.client_config.clone());
        Ok(self.peers.outbound.get_or_init(|| outbound))
    }

    /// Drops (and closes) the connection to a node whose process is gone.
    pub(crate) fn forget_peer(&self, address: SocketAddr) {
        let cell = lock(&self.peers.connections).remove(&address);
        if let Some(peer) = cell.as_ref().and_then(|cell| cell.get()) {
            peer.conn.close(quinn::VarInt::from_u32(2), b"process gone");
        }
    }

    /// Serves an incoming connection. It is not reused for calls to that peer: calls go
    /// out on connections this node opens itself, so each connection carries streams
    /// opened by its client only.
    pub(super) fn adopt(self: &Arc<Self>, conn: quinn::Connection) {
        Peer::new(self.clone(), conn);
    }
}

/// One connection, and the routes whose calls wait on it.
pub(crate) struct Peer {
    pub(crate) conn: quinn::Connection,
    /// What the streams the other side opens may hold in unfinished frames.
    budget: ConnectionBudget,
    /// The routes with calls on this connection, by their stream's id: a large reply
    /// comes on a stream of its own and names the call stream it answers.
    routes: Mutex<HashMap<u64, Weak<RouteState>>>,
}

impl Peer {
    /// Wraps a connection, whichever side opened it: both sides serve the streams the
    /// other opens, and read replies that come on streams of their own.
    fn new(node: Arc<Node>, conn: quinn::Connection) -> Arc<Peer> {
        let peer = Arc::new(Peer {
            conn: conn.clone(),
            budget: ConnectionBudget::new(connection_bytes()),
            routes: Mutex::new(HashMap::new()),
        });
        let reader = peer.clone();
        let runtime = node.runtime.clone();
        runtime.spawn(async move { reader.read_out_of_band_replies().await });
        let budget = peer.budget.clone();
        runtime.spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let node = node.clone();
                let conn = conn.clone();
                let budget = budget.clone();
                tokio::spawn(async move {
                    super::serve::serve_stream(node, conn, budget, send, recv).await
                });
            }
        });
        peer
    }

    /// Makes the route whose calls go on stream `stream_id` reachable by its large replies.
    pub(crate) fn register_route(&self, stream_id: u64, route: &Arc<RouteState>) {
        lock(&self.routes).insert(stream_id, Arc::downgrade(route));
    }

    /// The route's stream is over.
    pub(crate) fn forget_route(&self, stream_id: u64) {
        lock(&self.routes).remove(&stream_id);
    }

    fn route(&self, stream_id: u64) -> Option<Arc<RouteState>> {
        lock(&self.routes).get(&stream_id).and_then(Weak::upgrade)
    }

    /// Large replies come on streams of their own, so they never hold up small ones.
    async fn read_out_of_band_replies(self: Arc<Self>) {
        while let Ok(recv) = self.conn.accept_uni().await {
            let peer = self.clone();
            tokio::spawn(async move { peer.read_reply_stream(recv).await });
        }
    }

    /// Reads one reply stream: a `ReplyStream` header and the raw payload it announces,
    /// read straight into one buffer of the right size.
    async fn read_reply_stream(&self, recv: quinn::RecvStream) {
        let mut frames = super::serve::peer_frames(recv, &self.budget);
        let Some(Ok(body)) = frames.next().await else {
            return;
        };
        let (stream, call_id, len) = match decode_frame(&body) {
            Ok(Frame::ReplyStream {
                stream,
                call_id,
                len,
            }) => (stream, call_id, len),
            Ok(other) => return tracing::warn!("unexpected frame on a reply stream: {other:?}"),
            Err(error) => return tracing::warn!("unreadable reply stream: {error}"),
        };
        let Some(route) = self.route(stream) else {
            // The route is gone: nobody waits for this reply.
            return;
        };
        let limit = max_message_bytes();
        let len = match usize::try_from(len) {
            Ok(len) if len <= limit => len,
            _ => {
                let size = usize::try_from(len).unwrap_or(usize::MAX);
                return route.fail_call(call_id, Error::MessageTooLarge { size, limit });
            }
        };
        // The payload's share of the connection's budget, held until it is handed over.
        let Some(_share) = self.budget.admit(len).await else {
            return;
        };
        let parts = frames.into_parts();
        let mut payload = bytes::BytesMut::with_capacity(len);
        let buffered = parts.read_buf.len().min(len);
        payload.extend_from_slice(&parts.read_buf[..buffered]);
        let mut recv = parts.io.into_inner();
        while payload.len() < len {
            match recv.read_chunk(len - payload.len(), true).await {
                Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
                // Cut off: the sender is going away. The call is left to the route, which
                // learns why (the worker's exit, or the connection's loss).
                Ok(None) | Err(_) => return,
            }
        }
        route.resolve(call_id, KeptReply::from_bytes(payload.freeze()));
    }
}
