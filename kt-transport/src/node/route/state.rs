//! What a route knows about its actor's fate, and the calls waiting for its replies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use kt_core::backend::{Fate, KeptReply, encode_error};
use kt_core::{ActorLabel, DeathCause, Error};
use tokio::sync::watch;

use super::calls::{CallTable, release_parked};
use super::pending::{Answered, PendingCalls, Slot};
use super::reader::ReplyReader;
use crate::node::lock;
use crate::node::writer::OrderedWriter;

/// How long a watched route waits for its backend to say why the connection broke.
const VERDICT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A route's fate and pending calls, shared by its handles, its writer and its reader.
pub(crate) struct RouteState {
    label: ActorLabel,
    /// Why the actor died, and when callers waiting in `stopped()` learn it.
    fate: Fate,
    refused: OnceLock<Error>,
    /// True when a backend watches the actor's process and reports its death; the
    /// route then leaves pending calls to it instead of guessing from the connection.
    watched: bool,
    /// The calls sent on this route's stream and not answered yet, by call id.
    pending: Mutex<PendingCalls>,
    /// Who reads the replies: a caller waiting alone, or the route's reader task.
    reader: ReplyReader,
    /// The route's stream, where calls kept back wait for the room a reply frees.
    stream: OnceLock<Weak<OrderedWriter<CallTable>>>,
    /// True while the stream holds calls back (kept by the stream's call table).
    pub(super) holding_back: AtomicBool,
    /// True once the route's reply stream has ended (every reply sent was read).
    replies_done: watch::Sender<bool>,
    /// True once the actor's worker reported why it stopped (it then exits cleanly,
    /// after finishing its streams).
    reported: AtomicBool,
}

impl RouteState {
    pub(super) fn new(label: ActorLabel, watched: bool) -> Self {
        RouteState {
            label,
            fate: Fate::new(),
            refused: OnceLock::new(),
            watched,
            pending: Mutex::new(PendingCalls::default()),
            reader: ReplyReader::default(),
            stream: OnceLock::new(),
            holding_back: AtomicBool::new(false),
            replies_done: watch::channel(false).0,
            reported: AtomicBool::new(false),
        }
    }

    /// Records a call as waiting for its reply. The death is checked under the table's
    /// lock: one recorded before fails the call here (the slot comes back, to be failed
    /// with [`Self::gone`] once the caller holds no lock), one recorded after fails it
    /// with the other pending calls (`fail_pending` takes the same lock). Returns how
    /// many calls wait for replies now, this one included.
    ///
    /// A second call waiting, or one whose caller will not read (it brought a slot of its
    /// own), makes the reader task read the replies ([`ReplyReader`]).
    pub(super) fn register(&self, call_id: u64, slot: Slot) -> Result<usize, Slot> {
        let caller_may_read = matches!(slot, Slot::Waiting(_));
        let unanswered = {
            let mut pending = lock(&self.pending);
            if self.is_dead() {
                return Err(slot);
            }
            pending.insert(call_id, slot);
            pending.unanswered()
        };
        if unanswered > 1 || !caller_may_read {
            self.reader.take_over();
        }
        Ok(unanswered)
    }

    /// Whether call `call_id` still waits for its reply, and whether other calls do.
    pub(super) fn waiting_besides(&self, call_id: u64) -> (bool, bool) {
        let pending = lock(&self.pending);
        let mine = pending.is_unanswered(call_id);
        (mine, pending.unanswered() > usize::from(mine))
    }

    /// How many calls wait for their replies.
    pub(super) fn pending_count(&self) -> usize {
        lock(&self.pending).unanswered()
    }

    /// Which actor the route reaches.
    pub(super) fn label(&self) -> &ActorLabel {
        &self.label
    }

    /// Ties the state to the route's stream (once, when the route is made).
    pub(super) fn attach_stream(&self, stream: &Arc<OrderedWriter<CallTable>>) {
        let _ = self.stream.set(Arc::downgrade(stream));
    }

    /// Answers a pending call; the room it frees lets calls kept back go on the wire
    /// (whichever stream the reply came on).
    pub(crate) fn resolve(&self, call_id: u64, reply: KeptReply) {
        self.answer(call_id, reply);
        self.release_freed();
    }

    /// Answers a pending call, leaving the room it frees to [`Self::release_freed`]: a
    /// reader that has many replies at hand answers them all first, so that the calls
    /// they let go reach QUIC as one write. (QUIC keeps every write as a segment of its
    /// send buffer and scans those segments once per packet: a write per released call
    /// made a pipelined caller's driver spend a fifth of its time in that scan.)
    pub(super) fn answer(&self, call_id: u64, reply: KeptReply) {
        let answered = lock(&self.pending).answer(call_id, reply);
        match answered {
            Answered::Sink(slot, reply) => slot.deliver_kept(reply),
            Answered::Wake(Some(waker)) => waker.wake(),
            Answered::Wake(None) | Answered::Nobody => {}
        }
    }

    /// Collects the reply of call `call_id` for its caller (see
    /// [`kt_core::backend::EncodedRoute::poll_kept`]).
    ///
    /// A caller whose call is the only one unanswered reads the replies itself
    /// ([`ReplyReader`]); it keeps no waker in its slot while it does, so that its own
    /// reply does not wake the task that is reading it.
    pub(super) fn collect(&self, call_id: u64, cx: &mut Context<'_>) -> Poll<Option<KeptReply>> {
        let alone = {
            let mut pending = lock(&self.pending);
            let alone = pending.unanswered() == 1;
            let waker = (!alone).then_some(cx.waker());
            if let Some(collected) = pending.collect(call_id, waker) {
                return Poll::Ready(collected.ok());
            }
            alone
        };
        if !alone {
            return Poll::Pending;
        }
        self.reader.read_as_caller(self, call_id, cx);
        match lock(&self.pending).collect(call_id, Some(cx.waker())) {
            Some(collected) => Poll::Ready(collected.ok()),
            None => Poll::Pending,
        }
    }

    /// The caller of call `call_id` stopped waiting for its reply (if it read the
    /// replies last, the reader task takes them over).
    pub(super) fn forget(&self, call_id: u64) {
        lock(&self.pending).forget(call_id);
        self.reader.take_over();
    }

    /// Who reads the route's replies.
    pub(super) fn reader(&self) -> &ReplyReader {
        &self.reader
    }

    /// True while the route's stream holds calls back.
    pub(super) fn is_holding_back(&self) -> bool {
        self.holding_back.load(Ordering::SeqCst)
    }

    /// Puts the calls kept back on the wire as far as the replies answered so far made
    /// room.
    pub(super) fn release_freed(&self) {
        // Most replies free room nobody waits for: only a route holding calls back
        // takes its stream's lock here.
        if self.is_holding_back()
            && let Some(stream) = self.stream.get().and_then(Weak::upgrade)
        {
            release_parked(&stream, self);
        }
    }

    /// Fails one pending call.
    pub(crate) fn fail_call(&self, call_id: u64, error: Error) {
        self.answer(call_id, KeptReply::from_bytes(encode_error(&error)));
    }

    /// Fails every call of this route still waiting for a reply (replies that came stay
    /// for their callers).
    pub(crate) fn fail_pending(&self) {
        let failed = lock(&self.pending).drain_unanswered();
        if failed.is_empty() {
            return;
        }
        let error = self.gone();
        for slot in failed {
            match slot {
                Slot::Sink(reply) => reply.fail(error.clone()),
                // The caller finds no reply and asks the route why.
                Slot::Waiting(Some(waker)) => waker.wake(),
                Slot::Waiting(None) | Slot::Answered(_) | Slot::Forgotten => {}
            }
        }
    }

    /// Records the cause the actor's worker reported; calls already sent keep waiting for
    /// the replies it is still flushing.
    pub(crate) fn report(&self, cause: DeathCause) {
        self.reported.store(true, Ordering::Release);
        self.die(cause);
    }

    /// True once the actor's worker reported why it stopped.
    pub(crate) fn was_reported(&self) -> bool {
        self.reported.load(Ordering::Acquire)
    }

    /// Resolves once the actor is known to be dead (or its node refused the route).
    pub(super) async fn died(&self) {
        self.fate.finished().await;
    }

    /// Resolves when the actor has stopped for good, with the reason.
    pub(super) fn stopped(&self) -> futures_util::future::BoxFuture<'static, DeathCause> {
        // The stream's end says the actor stopped: the reader task must be the one to
        // hear it.
        self.reader.take_over();
        self.fate.stopped()
    }

    /// Waits (bounded) until every reply the actor's process sent has been read.
    pub(crate) async fn replies_read(&self, within: std::time::Duration) {
        // A caller that read last may not be polling: the reader task reads them.
        self.reader.take_over();
        let mut done = self.replies_done.subscribe();
        let _ = tokio::time::timeout(within, done.wait_for(|done| *done)).await;
    }

    /// Marks the reply stream as read to its end.
    pub(super) fn replies_ended(&self) {
        self.replies_done.send_replace(true);
    }

    /// The error for calls that cannot be answered any more.
    pub(crate) fn gone(&self) -> Error {
        if let Some(error) = self.refused.get() {
            return error.clone();
        }
        match self.fate.cause() {
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

    /// Why the actor died, once it has.
    pub(crate) fn death_cause(&self) -> Option<DeathCause> {
        self.fate.cause().cloned()
    }

    /// Records the actor's death (the first cause wins), wakes `stopped()` waiters, and
    /// fails the calls still pending.
    pub(crate) fn die_and_fail(&self, cause: DeathCause) {
        self.die(cause);
        self.fail_pending();
    }

    /// Records the actor's death (the first cause wins) and wakes `stopped()` waiters.
    pub(crate) fn die(&self, cause: DeathCause) {
        self.fate.die(cause);
    }

    /// The connection is gone: decides the actor's fate. A watched route waits (briefly)
    /// for the backend's verdict — the exit code, the signal, or the worker's own report —
    /// so that callers learn why, not just that the connection broke.
    pub(super) async fn settle_lost_connection(&self, message: String) {
        if self.watched
            && tokio::time::timeout(VERDICT_GRACE, self.fate.finished())
                .await
                .is_ok()
        {
            return;
        }
        self.die(DeathCause::ConnectionLost { message });
    }

    /// The node refused the route's stream: every call fails with its error.
    pub(super) fn refuse(&self, error: Error) {
        let _ = self.refused.set(error);
        self.fate.finish_unrecorded(DeathCause::ConnectionLost {
            message: "the node refused the stream".into(),
        });
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.fate.is_dead() || self.refused.get().is_some()
    }
}

impl std::fmt::Debug for RouteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteState")
            .field("actor", &self.label)
            .field("death", &self.fate.cause())
            .finish()
    }
}
