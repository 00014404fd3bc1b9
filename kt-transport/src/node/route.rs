//! [`RemoteRoute`]: calls to an actor in another process, over one QUIC stream.
//!
//! All handles of this process to one remote actor share a route, and a route sends
//! its calls in order on one bidirectional stream (rule O1), many frames per write when
//! calls queue up. Replies come back on the same stream, or on a stream of their own
//! when they are large. The route's outgoing queue is an [`OrderedSender`], so sending is
//! eager, ordered and bounded exactly as for an actor in this process.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use kt_core::handle_wire::HandleAddress;
use kt_core::{
    Accepted, ActorLabel, DeathCause, EncodedReply, EncodedRoute, Error, OrderedSender,
    Undeliverable,
};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;

use super::{Node, Peer};
use crate::wire::frame::{
    Frame, PROTOCOL_VERSION, codec, decode_frame, encode_frame, max_message_bytes,
};

/// How many calls a route queues before callers wait (rule B1).
const ROUTE_QUEUE: usize = 4096;

/// How long a watched route waits for its backend to say why the connection broke.
const VERDICT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The most calls written in one batch.
const MAX_BATCH: usize = 1024;

/// What a route knows about its actor's fate, shared with pending calls.
pub(crate) struct RouteState {
    label: ActorLabel,
    death: OnceLock<DeathCause>,
    refused: OnceLock<Error>,
    /// True when a backend watches the actor's process and reports its death; the
    /// route then leaves pending calls to it instead of guessing from the connection.
    watched: bool,
    finished: watch::Sender<Option<DeathCause>>,
    /// The connection the route's calls are pending on, once connected.
    peer: OnceLock<std::sync::Weak<Peer>>,
    /// True once the route's reply stream has ended (every reply sent was read).
    replies_done: watch::Sender<bool>,
    /// True once the actor's worker reported why it stopped (it then exits cleanly,
    /// after finishing its streams).
    reported: std::sync::atomic::AtomicBool,
}

impl RouteState {
    /// Records the cause the actor's worker reported; calls already sent keep waiting for
    /// the replies it is still flushing.
    pub(crate) fn report(&self, cause: DeathCause) {
        self.reported
            .store(true, std::sync::atomic::Ordering::Release);
        self.die(cause);
    }

    /// True once the actor's worker reported why it stopped.
    pub(crate) fn was_reported(&self) -> bool {
        self.reported.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once the actor is known to be dead (or its node refused the route).
    async fn died(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(Option::is_some).await;
    }

    /// Waits (bounded) until every reply the actor's process sent has been read.
    pub(crate) async fn replies_read(&self, within: std::time::Duration) {
        let mut done = self.replies_done.subscribe();
        let _ = tokio::time::timeout(within, done.wait_for(|done| *done)).await;
    }

    /// Fails every call of this route still waiting for a reply.
    pub(crate) fn fail_pending(self: &Arc<Self>) {
        if let Some(peer) = self.peer.get().and_then(std::sync::Weak::upgrade) {
            peer.fail_route(self);
        }
    }

    /// The error for calls that cannot be answered any more.
    pub(crate) fn gone(&self) -> Error {
        if let Some(error) = self.refused.get() {
            return error.clone();
        }
        match self.death.get() {
            Some(cause) => Error::ActorDied {
                actor: self.label.clone(),
                cause: cause.clone(),
            },
            None => Error::Unavailable {
                target: format!("actor {}", self.label),
                message: "the connection to its process is gone".into(),
            },
        }
    }

    /// Records the actor's death (the first cause wins), wakes `stopped()` waiters, and
    /// fails the calls still pending.
    pub(crate) fn die_and_fail(self: &Arc<Self>, cause: DeathCause) {
        self.die(cause);
        self.fail_pending();
    }

    /// Records the actor's death (the first cause wins) and wakes `stopped()` waiters.
    pub(crate) fn die(&self, cause: DeathCause) {
        let _ = self.death.set(cause);
        self.finished.send_replace(self.death.get().cloned());
    }

    /// The connection is gone: decides the actor's fate. A watched route waits (briefly)
    /// for the backend's verdict — the exit code, the signal, or the worker's own report —
    /// so that callers learn why, not just that the connection broke.
    async fn settle_lost_connection(&self, message: String) {
        if self.watched {
            let mut finished = self.finished.subscribe();
            let verdict = tokio::time::timeout(VERDICT_GRACE, finished.wait_for(Option::is_some));
            if verdict.await.is_ok() {
                return;
            }
        }
        self.die(DeathCause::ConnectionLost { message });
    }

    fn refuse(&self, error: Error) {
        let _ = self.refused.set(error);
        self.finished.send_replace(Some(DeathCause::ConnectionLost {
            message: "the node refused the stream".into(),
        }));
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.death.get().is_some() || self.refused.get().is_some()
    }
}

/// One item of a route's outgoing queue.
enum Outgoing {
    /// The last owning handle is gone: sent behind every call already made (rule L1).
    Release,
    Call {
        method: String,
        payload: Bytes,
        reply: EncodedReply,
    },
    Kill,
}

/// Calls to one actor in another process.
pub struct RemoteRoute {
    address: HandleAddress,
    state: Arc<RouteState>,
    outgoing: Arc<OrderedSender<Outgoing>>,
    /// Kills the actor's process directly (a backend that owns the process sets it).
    killer: Option<Box<dyn Fn() + Send + Sync>>,
}

impl RemoteRoute {
    /// A route to the actor at `address`; `watched` says a backend reports its death;
    /// `killer` kills its process.
    pub(crate) fn new(
        node: Arc<Node>,
        address: HandleAddress,
        watched: bool,
        killer: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Arc<RemoteRoute> {
        let state = Arc::new(RouteState {
            label: address.label.clone(),
            death: OnceLock::new(),
            refused: OnceLock::new(),
            watched,
            finished: watch::channel(None).0,
            peer: OnceLock::new(),
            replies_done: watch::channel(false).0,
            reported: std::sync::atomic::AtomicBool::new(false),
        });
        let reason_state = state.clone();
        let undeliverable = Undeliverable {
            bounce: |item: Outgoing, error| {
                if let Outgoing::Call { reply, .. } = item {
                    reply.fail(error);
                }
            },
            reason: Box::new(move || reason_state.gone()),
        };
        let runtime = node.runtime.clone();
        let (outgoing, rx) = OrderedSender::new(ROUTE_QUEUE, runtime.clone(), undeliverable);
        let task_state = state.clone();
        let target = address.clone();
        runtime.spawn(async move { run_route(node, task_state, target, rx).await });
        Arc::new(RemoteRoute {
            address,
            state,
            outgoing,
            killer,
        })
    }

    pub(crate) fn state(&self) -> &Arc<RouteState> {
        &self.state
    }

    /// Why the actor died, once it has.
    pub(crate) fn death_cause(&self) -> Option<DeathCause> {
        self.state.death.get().cloned()
    }

    /// What releases the actor when the driver's last owning handle drops: a `Release`
    /// frame queued behind the calls already sent on this route.
    pub(crate) fn releaser(&self) -> Arc<dyn kt_core::Release> {
        Arc::new(ReleaseOnRoute {
            outgoing: self.outgoing.clone(),
        })
    }
}

/// Sends `Release` on a route; keeps the route's queue open until it has.
struct ReleaseOnRoute {
    outgoing: Arc<OrderedSender<Outgoing>>,
}

impl kt_core::Release for ReleaseOnRoute {
    fn release(&self) {
        let _ = self.outgoing.send(Outgoing::Release);
    }
}

impl EncodedRoute for RemoteRoute {
    fn label(&self) -> &ActorLabel {
        &self.address.label
    }

    fn send_encoded(&self, method: &str, payload: Bytes, reply: EncodedReply) -> Accepted {
        if self.state.is_dead() {
            reply.fail(self.state.gone());
            return Accepted::Now;
        }
        let limit = max_message_bytes();
        if payload.len() > limit {
            reply.fail(Error::MessageTooLarge {
                size: payload.len(),
                limit,
            });
            return Accepted::Now;
        }
        let call = Outgoing::Call {
            method: method.to_string(),
            payload,
            reply,
        };
        self.outgoing.send(call)
    }

    fn gone(&self) -> Error {
        self.state.gone()
    }

    fn kill(&self) {
        if self.state.is_dead() {
            return;
        }
        self.state.die(DeathCause::Killed);
        match &self.killer {
            Some(kill) => kill(),
            None => {
                let _ = self.outgoing.send(Outgoing::Kill);
            }
        }
    }

    fn is_alive(&self) -> bool {
        !self.state.is_dead()
    }

    fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        let mut finished = self.state.finished.subscribe();
        Box::pin(async move {
            match finished.wait_for(Option::is_some).await {
                Ok(cause) => cause.clone().unwrap_or(DeathCause::RuntimeShutdown),
                Err(_) => DeathCause::RuntimeShutdown,
            }
        })
    }

    fn address(&self) -> Option<HandleAddress> {
        Some(self.address.clone())
    }
}

/// Connects, opens the route's stream, and writes queued calls in batches until every
/// handle to the route is gone.
async fn run_route(
    node: Arc<Node>,
    state: Arc<RouteState>,
    address: HandleAddress,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let fail_queued = |rx: &mut mpsc::Receiver<Outgoing>, error: Error| {
        rx.close();
        while let Ok(item) = rx.try_recv() {
            if let Outgoing::Call { reply, .. } = item {
                reply.fail(error.clone());
            }
        }
    };
    // Connecting to a process that has just died would wait out the handshake timeout:
    // stop as soon as the actor is known to be dead.
    let connect = async {
        let addr = address
            .node
            .parse::<SocketAddr>()
            .map_err(|e| Error::Protocol {
                message: format!("bad node address '{}': {e}", address.node),
            })?;
        let peer = node.peer(addr).await?;
        let streams = peer.conn.open_bi().await.map_err(|e| Error::Unavailable {
            target: format!("node {addr}"),
            message: e.to_string(),
        })?;
        Ok::<_, Error>((peer, streams))
    };
    let connected = tokio::select! {
        connected = connect => connected,
        _ = state.died() => return fail_queued(&mut rx, state.gone()),
    };
    let (peer, (mut send, recv)) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            state.settle_lost_connection(error.to_string()).await;
            return fail_queued(&mut rx, state.gone());
        }
    };
    let _ = state.peer.set(Arc::downgrade(&peer));
    tokio::spawn(read_replies(peer.clone(), state.clone(), recv));
    let mut buf = BytesMut::new();
    if let Err(error) = encode_frame(
        &Frame::Open {
            version: PROTOCOL_VERSION,
            actor_id: address.label.id,
        },
        &mut buf,
    ) {
        return fail_queued(&mut rx, error);
    }
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for item in batch.drain(..) {
            encode_outgoing(&peer, &state, item, &mut buf);
        }
        if let Err(error) = send.write_all(&buf).await {
            state.settle_lost_connection(error.to_string()).await;
            peer.fail_route(&state);
            return fail_queued(&mut rx, state.gone());
        }
        buf.clear();
    }
    let _ = send.finish();
}

fn encode_outgoing(peer: &Peer, state: &Arc<RouteState>, item: Outgoing, buf: &mut BytesMut) {
    match item {
        Outgoing::Call {
            method,
            payload,
            reply,
        } => {
            let call_id = peer.register(reply, state.clone());
            // Registered first, checked second: a death recorded before this point is seen
            // here, and one recorded after it fails the call with the other pending ones.
            if state.is_dead() {
                return peer.fail_call(call_id, state.gone());
            }
            if let Err(error) = encode_frame(
                &Frame::Call {
                    call_id,
                    method,
                    payload,
                },
                buf,
            ) {
                peer.fail_call(call_id, error);
            }
        }
        Outgoing::Kill => {
            let _ = encode_frame(&Frame::Kill, buf);
        }
        Outgoing::Release => {
            let _ = encode_frame(&Frame::Release, buf);
        }
    }
}

/// Reads the replies that come back on the route's own stream.
async fn read_replies(peer: Arc<Peer>, state: Arc<RouteState>, recv: quinn::RecvStream) {
    let mut frames = FramedRead::new(recv, codec(max_message_bytes()));
    while let Some(frame) = frames.next().await {
        let body = match frame {
            Ok(body) => body,
            Err(error) => {
                state.settle_lost_connection(error.to_string()).await;
                break;
            }
        };
        match decode_frame(&body) {
            Ok(Frame::Reply { call_id, payload }) => peer.resolve(call_id, payload),
            Ok(Frame::Refused { error }) => {
                state.refuse(error);
                break;
            }
            Ok(other) => tracing::warn!("unexpected frame on a call stream: {other:?}"),
            Err(error) => {
                state.refuse(error);
                break;
            }
        }
    }
    // The stream is over: unless a backend watching the process will say why, calls
    // still pending here can no longer be answered.
    state.replies_done.send_replace(true);
    state
        .settle_lost_connection("the call stream ended".into())
        .await;
    if state.is_dead() {
        peer.fail_route(&state);
    }
}

/// Reads the worker's `Gone` report, which says why the actor stopped (more than an exit
/// code can).
pub(crate) async fn watch_events(events: super::Frames, state: Arc<RouteState>) {
    let mut events = events;
    while let Some(frame) = super::next_frame(&mut events).await {
        if let Ok(Frame::Gone { cause }) = frame {
            // New calls fail from now on; calls already sent keep waiting for the replies
            // the worker is still flushing (the process watcher fails what is left).
            state.report(cause);
        }
    }
}
