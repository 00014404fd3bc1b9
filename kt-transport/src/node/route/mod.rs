//! [`RemoteRoute`]: calls to an actor in another process, over one QUIC stream.
//!
//! All handles of this process to one remote actor share a route, and a route sends
//! its calls in order on one bidirectional stream (rule O1): binary call frames
//! ([`crate::wire::call`]) appended to the route's [`outbox`], written by the caller
//! itself when the stream is idle and by the route's writer task when QUIC is busy.
//! Replies come back on the same stream, read by the route's reader task into the
//! route's own window of pending calls ([`pending`], kept with its fate in [`state`]),
//! or on a stream of their own when they are large. A typed caller's reply waits in its
//! slot until the caller's `Call` collects it ([`EncodedRoute::poll_kept`]).

mod calls;
mod pending;
mod reader;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use kt_core::backend::{Accepted, AwaitedReply, EncodedReply, EncodedRoute, KeptReply};
use kt_core::handle_wire::HandleAddress;
use kt_core::{ActorLabel, DeathCause, Error};
use tokio_util::codec::FramedRead;

use super::writer::OrderedWriter;
use super::{Node, Peer};
use crate::wire::call::{NodeFrameCodec, write_kill};
use crate::wire::frame::{Frame, PROTOCOL_VERSION, encode_frame, max_message_bytes};
use calls::{CallTable, Unsent, drop_parked, send_call, send_release};
use pending::Slot;
use reader::End;
pub(crate) use state::RouteState;

/// The ordered bytes of a route's stream.
type Route = OrderedWriter<CallTable>;

/// Keeps a route's stream open while a handle or a releaser may still write to it.
struct StreamUse(Arc<Route>);

impl Drop for StreamUse {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Calls to one actor in another process.
pub struct RemoteRoute {
    address: HandleAddress,
    state: Arc<RouteState>,
    stream: Arc<StreamUse>,
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
        let state = Arc::new(RouteState::new(address.label.clone(), watched));
        let mut open = BytesMut::new();
        let opened = encode_frame(
            &Frame::Open {
                version: PROTOCOL_VERSION,
                actor_id: address.label.id,
                host: crate::wire::host::announced().map(str::to_string),
            },
            &mut open,
        );
        let credit = kt_core::DEFAULT_MAILBOX_CAPACITY + 1;
        let outbox = Arc::new(OrderedWriter::new(open, CallTable::new(credit)));
        state.attach_stream(&outbox);
        if let Err(error) = opened {
            state.refuse(error);
            outbox.close();
        } else {
            let runtime = node.runtime.clone();
            let (task_state, task_outbox, target) =
                (state.clone(), outbox.clone(), address.clone());
            runtime.spawn(async move { run_route(node, task_state, target, task_outbox).await });
        }
        Arc::new(RemoteRoute {
            address,
            state,
            stream: Arc::new(StreamUse(outbox)),
            killer,
        })
    }

    /// Sets how many unanswered calls may be on the wire before callers' `sent()` waits
    /// (rule B1): the actor's mailbox capacity plus the calls it runs at once. A backend
    /// that spawned the actor knows them; a handle that travelled assumes the defaults.
    pub fn pace_to(&self, mailbox_capacity: usize, max_concurrency: usize) {
        if let Some(mut appender) = self.stream.0.append() {
            appender
                .parts(0)
                .1
                .set_credit(mailbox_capacity.saturating_add(max_concurrency));
        }
    }

    pub(crate) fn state(&self) -> &Arc<RouteState> {
        &self.state
    }

    /// Why the actor died, once it has.
    pub(crate) fn death_cause(&self) -> Option<DeathCause> {
        self.state.death_cause()
    }

    /// What releases the actor when the driver's last owning handle drops: a `Release`
    /// frame queued behind the calls already sent on this route.
    pub(crate) fn releaser(&self) -> Arc<dyn kt_core::backend::Release> {
        Arc::new(ReleaseOnRoute {
            stream: self.stream.clone(),
        })
    }

    /// Puts one call on the route, registered as `slot`: its id, or why it was refused.
    fn send(&self, method: &str, args: &[u8], slot: Slot) -> Result<(Accepted, u64), Unsent> {
        if self.state.is_dead() {
            return Err((slot, Box::new(self.state.gone())));
        }
        let limit = max_message_bytes();
        if args.len() > limit {
            let size = args.len();
            return Err((slot, Box::new(Error::MessageTooLarge { size, limit })));
        }
        send_call(&self.stream.0, &self.state, method, args, slot)
    }
}

/// Sends `Release` on a route; keeps the route's stream open until it has.
struct ReleaseOnRoute {
    stream: Arc<StreamUse>,
}

impl kt_core::backend::Release for ReleaseOnRoute {
    fn release(&self) {
        send_release(&self.stream.0);
    }
}

impl EncodedRoute for RemoteRoute {
    fn label(&self) -> &ActorLabel {
        &self.address.label
    }

    fn send_encoded(&self, method: &str, payload: Bytes, reply: EncodedReply) -> Accepted {
        self.send_args(method, &payload, reply)
    }

    fn send_args(&self, method: &str, args: &[u8], reply: EncodedReply) -> Accepted {
        match self.send(method, args, Slot::Sink(reply)) {
            Ok((accepted, _)) => accepted,
            Err((slot, error)) => {
                if let Slot::Sink(reply) = slot {
                    reply.fail(*error);
                }
                Accepted::Now
            }
        }
    }

    fn send_awaited(&self, method: &str, args: &[u8]) -> (Accepted, AwaitedReply) {
        match self.send(method, args, Slot::Waiting(None)) {
            Ok((accepted, call_id)) => (accepted, AwaitedReply::Kept(call_id)),
            Err((_, error)) => (Accepted::Now, AwaitedReply::Refused(error)),
        }
    }

    fn poll_kept(&self, call: u64, cx: &mut Context<'_>) -> Poll<Option<KeptReply>> {
        self.state.collect(call, cx)
    }

    fn forget_kept(&self, call: u64) {
        self.state.forget(call);
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
                if let Some(mut appender) = self.stream.0.append() {
                    write_kill(appender.parts(8).0);
                }
            }
        }
    }

    fn is_alive(&self) -> bool {
        !self.state.is_dead()
    }

    fn stopped(&self) -> BoxFuture<'static, DeathCause> {
        self.state.stopped()
    }

    fn address(&self) -> Option<HandleAddress> {
        Some(self.address.clone())
    }
}

/// Connects, opens the route's stream, starts its reader, and writes what callers could
/// not write themselves until every handle to the route is gone.
async fn run_route(
    node: Arc<Node>,
    state: Arc<RouteState>,
    address: HandleAddress,
    outbox: Arc<Route>,
) {
    let lost = |outbox: &Route, state: &RouteState| {
        drop_parked(outbox, state);
        outbox.close();
        state.fail_pending();
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
        _ = state.died() => return lost(&outbox, &state),
    };
    let (peer, (send, recv)) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            state.settle_lost_connection(error.to_string()).await;
            return lost(&outbox, &state);
        }
    };
    let stream_id = u64::from(send.id());
    peer.register_route(stream_id, &state);
    tokio::spawn(read_replies(
        peer,
        state.clone(),
        outbox.clone(),
        recv,
        stream_id,
    ));
    if let Err(error) = outbox.write_until_finished(send).await {
        state.settle_lost_connection(error.to_string()).await;
        lost(&outbox, &state);
    }
}

/// Reads the replies that come back on the route's own stream, whenever no caller does
/// ([`reader`]), and handles the stream's end.
async fn read_replies(
    peer: Arc<Peer>,
    state: Arc<RouteState>,
    outbox: Arc<Route>,
    recv: quinn::RecvStream,
    stream_id: u64,
) {
    state.reader().install(FramedRead::new(
        recv,
        NodeFrameCodec::new(max_message_bytes()),
    ));
    let end = std::future::poll_fn(|cx| state.reader().poll_task(&state, cx)).await;
    if let End::Failed(message) = end {
        state.settle_lost_connection(message).await;
    }
    // The stream is over: unless a backend watching the process will say why, calls
    // still pending here can no longer be answered.
    state.replies_ended();
    peer.forget_route(stream_id);
    state
        .settle_lost_connection("the call stream ended".into())
        .await;
    if state.is_dead() {
        drop_parked(&outbox, &state);
        state.fail_pending();
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
