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
use kt_core::codec::attachments::Attachment;
use tokio::sync::OnceCell;

use super::route::RouteState;
use super::{Node, lock};
use crate::wire::budget::{ConnectionBudget, connection_bytes};
use crate::wire::frame::{Frame, decode_frame, message_total};
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
    /// read straight into one buffer of the right size; or an `AttachedReply` and its
    /// blobs, claimed at the node's socket or read from the stream behind it.
    async fn read_reply_stream(&self, recv: quinn::RecvStream) {
        let mut frames = super::serve::peer_frames(recv, &self.budget);
        let Some(Ok(body)) = frames.next().await else {
            return;
        };
        let frame = match decode_frame(&body) {
            Ok(frame) => frame,
            Err(error) => return tracing::warn!("unreadable reply stream: {error}"),
        };
        let (stream, call_id, lens) = match &frame {
            Frame::ReplyStream {
                stream,
                call_id,
                len,
            } => (*stream, *call_id, vec![*len]),
            Frame::AttachedReply {
                stream,
                call_id,
                socket: None,
                lens,
                ..
            } => (*stream, *call_id, lens.clone()),
            Frame::AttachedReply {
                stream,
                call_id,
                encoded,
                socket: Some(socket),
                token,
                lens,
            } => {
                let Some(route) = self.route(*stream) else {
                    return;
                };
                return match super::attachments::claim(socket, *token, lens).await {
                    Ok(blobs) => route.resolve(
                        *call_id,
                        KeptReply::Attached {
                            encoded: encoded.clone(),
                            attachments: Arc::from(blobs),
                        },
                    ),
                    Err(error) => route.fail_call(*call_id, error),
                };
            }
            other => return tracing::warn!("unexpected frame on a reply stream: {other:?}"),
        };
        let Some(route) = self.route(stream) else {
            // The route is gone: nobody waits for this reply.
            return;
        };
        let total = match message_total(lens.iter().copied()) {
            Ok(total) => total,
            Err(error) => return route.fail_call(call_id, error),
        };
        // The payload's share of the connection's budget, held until it is handed over.
        let Some(_share) = self.budget.admit(total).await else {
            return;
        };
        let parts = frames.into_parts();
        let mut raw = RawReader {
            buffered: parts.read_buf,
            recv: parts.io.into_inner(),
        };
        let mut payloads = Vec::with_capacity(lens.len());
        for len in lens {
            // Cut off: the sender is going away. The call is left to the route, which
            // learns why (the worker's exit, or the connection's loss).
            let Some(payload) = raw.read(len as usize).await else {
                return;
            };
            payloads.push(payload);
        }
        let reply = match frame {
            Frame::AttachedReply { encoded, .. } => KeptReply::Attached {
                encoded,
                attachments: payloads
                    .into_iter()
                    .map(|bytes| Attachment {
                        bytes,
                        shared: None,
                    })
                    .collect(),
            },
            _ => KeptReply::from_bytes(payloads.pop().unwrap_or_default()),
        };
        route.resolve(call_id, reply);
    }
}

/// Raw payloads at least this long are received into memory of their own, asked to be
/// backed by huge pages (transparent huge pages in `madvise` mode, the common default).
const HUGE_PAGES_FROM: usize = 4 << 20;

/// The raw bytes behind a reply stream's frame: what the frame reader had buffered, then
/// the stream.
struct RawReader {
    buffered: bytes::BytesMut,
    recv: quinn::RecvStream,
}

impl RawReader {
    /// The next `len` bytes, each read straight into one buffer of that size; `None` if
    /// the stream ends first.
    async fn read(&mut self, len: usize) -> Option<bytes::Bytes> {
        if self.buffered.len() >= len {
            return Some(self.buffered.split_to(len).freeze());
        }
        if len >= HUGE_PAGES_FROM
            && let Ok(mut buffer) = memmap2::MmapMut::map_anon(len)
        {
            // Fresh pages cost a fault each: 4 KiB pages made a 100 MB reply spend a
            // third of its time faulting; 2 MiB ones, where the kernel has them, do not.
            let _ = buffer.advise(memmap2::Advice::HugePage);
            let mut filled = self.buffered.len();
            buffer[..filled].copy_from_slice(&self.buffered.split());
            while filled < len {
                filled += self.recv.read(&mut buffer[filled..]).await.ok()??;
            }
            return Some(bytes::Bytes::from_owner(buffer));
        }
        let mut payload = bytes::BytesMut::with_capacity(len);
        payload.extend_from_slice(&self.buffered.split());
        while payload.len() < len {
            let chunk = self
                .recv
                .read_chunk(len - payload.len(), true)
                .await
                .ok()??;
            payload.extend_from_slice(&chunk.bytes);
        }
        Some(payload.freeze())
    }
}
