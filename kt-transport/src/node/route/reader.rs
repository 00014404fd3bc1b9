//! [`ReplyReader`]: who reads a route's reply stream — the caller waiting for the only
//! unanswered call, or the route's reader task.
//!
//! Why a caller reads: tokio runs a task woken by the running one next, on the same
//! thread (its LIFO slot), but at most three times in a row; the task woken after that
//! goes to the run queue and wakes a sleeping worker thread, which then steals work and
//! contends with this one for the connection's lock (on these VMs an idle vCPU takes
//! about 55 µs to wake). A reply that arrives runs quinn's endpoint driver, then its
//! connection driver, then whoever reads the stream: if that is a reader task, which
//! wakes the caller, the caller runs fourth and its next call's write wakes the
//! connection driver onto the run queue — a worker wake-up per round trip, measured at
//! about 0.45 per round trip, where a raw quinn ping-pong pays none. So a caller whose
//! call is the only one unanswered reads the stream itself, as a hand-written client
//! would.
//!
//! Why that cannot strand a reply: QUIC wakes only the task that polled the stream
//! last. A caller that has its reply, with no other call waiting, polls the stream once
//! more with the reader task's waker, so that the task hears what comes next (the
//! stream's end, above all). A caller still waiting may stop polling (its `Call` kept
//! in a `select!`), so the reader task takes the stream back whenever, while a caller
//! was the last to read, a second call is registered or a call that no caller collects
//! (one with a reply slot of its own: a group broadcast, a forwarded call), when a
//! `Call` is dropped, and when someone waits for the actor's end
//! ([`ReplyReader::take_over`]). With two or more calls unanswered, only the task reads. A caller
//! never ends the stream: what it meets besides replies (the stream's end, a read
//! error, a refusal) is left to the task ([`End`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use tokio_util::codec::FramedRead;

use super::state::RouteState;
use crate::node::lock;
use crate::wire::call::{NodeFrame, NodeFrameCodec};

/// A route's reply stream, cut into frames.
pub(super) type ReplyFrames = FramedRead<quinn::RecvStream, NodeFrameCodec>;

/// How a reply stream ended.
#[derive(Debug)]
pub(super) enum End {
    /// The actor's node finished the stream.
    Finished,
    /// Reading failed (the connection broke).
    Failed(String),
    /// The node refused the stream, or sent a malformed frame: the route was refused.
    Refused,
}

/// Who reads a route's replies, and the stream while nobody does.
#[derive(Default)]
pub(super) struct ReplyReader {
    inner: Mutex<Inner>,
    /// True while the last to read was a caller (QUIC would wake it, not the task).
    caller_read_last: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// The stream, while nobody reads it; `None` before it opens and while someone reads.
    frames: Option<ReplyFrames>,
    /// How the stream ended, when a caller met the end: for the task to handle.
    end: Option<End>,
    /// The reader task's waker.
    task: Option<Waker>,
    /// The task found the stream taken and waits for it.
    task_waits: bool,
}

impl ReplyReader {
    /// The stream is open: from now on it can be read.
    pub(super) fn install(&self, frames: ReplyFrames) {
        let task = {
            let mut inner = lock(&self.inner);
            inner.frames = Some(frames);
            inner.task.clone()
        };
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Reads the replies at hand for the caller of call `call_id`, the only one
    /// unanswered; returns at once if someone else reads. While that call waits, QUIC
    /// wakes `cx`'s task when more come; once it is answered and no other call waits, the
    /// stream is polled once more on the reader task's behalf, so that QUIC wakes the
    /// task from then on (the stream's end must be seen while nobody calls).
    pub(super) fn read_as_caller(&self, state: &RouteState, call_id: u64, cx: &mut Context<'_>) {
        let Some(mut frames) = lock(&self.inner).frames.take() else {
            return;
        };
        let mut end = read_at_hand(&mut frames, state, cx);
        // Said before counting the calls, so that one registered meanwhile either is
        // counted here or sees this and takes the stream over (`take_over`).
        self.caller_read_last.store(true, Ordering::SeqCst);
        let (mine_waits, others_wait) = state.waiting_besides(call_id);
        if end.is_none() && !mine_waits && !others_wait {
            let task = lock(&self.inner).task.clone();
            if let Some(task) = task {
                end = read_at_hand(&mut frames, state, &mut Context::from_waker(&task));
                self.caller_read_last.store(false, Ordering::SeqCst);
            }
        }
        let task = {
            let mut inner = lock(&self.inner);
            inner.frames = Some(frames);
            let ended = end.is_some();
            if ended {
                inner.end = end;
            }
            match ended || others_wait || inner.task_waits {
                true => {
                    inner.task_waits = false;
                    self.caller_read_last.store(false, Ordering::SeqCst);
                    inner.task.clone()
                }
                false => None,
            }
        };
        if let Some(task) = task {
            task.wake();
        }
    }

    /// A second call waits, or the caller that read last stopped waiting: the reader
    /// task reads from now on (it polls the stream, so QUIC wakes it, not the caller).
    pub(super) fn take_over(&self) {
        if !self.caller_read_last.swap(false, Ordering::SeqCst) {
            return;
        }
        let task = lock(&self.inner).task.clone();
        if let Some(task) = task {
            task.wake();
        }
    }

    /// The reader task's side: reads every reply at hand, and resolves once the stream
    /// has ended. While calls are held back, the replies read are all answered before
    /// the calls they make room for are released, so those go out in one write.
    pub(super) fn poll_task(&self, state: &RouteState, cx: &mut Context<'_>) -> Poll<End> {
        let mut frames = {
            let mut inner = lock(&self.inner);
            if let Some(end) = inner.end.take() {
                return Poll::Ready(end);
            }
            if !inner
                .task
                .as_ref()
                .is_some_and(|task| task.will_wake(cx.waker()))
            {
                inner.task = Some(cx.waker().clone());
            }
            match inner.frames.take() {
                Some(frames) => frames,
                None => {
                    inner.task_waits = true;
                    return Poll::Pending;
                }
            }
        };
        let end = read_at_hand(&mut frames, state, cx);
        self.caller_read_last.store(false, Ordering::SeqCst);
        lock(&self.inner).frames = Some(frames);
        if let Some(end) = end {
            return Poll::Ready(end);
        }
        state.release_freed();
        Poll::Pending
    }
}

/// Answers every reply the stream has at hand; `Some` once the stream is over.
fn read_at_hand(frames: &mut ReplyFrames, state: &RouteState, cx: &mut Context<'_>) -> Option<End> {
    loop {
        let frame = match std::pin::Pin::new(&mut *frames).poll_next(cx) {
            Poll::Pending => return None,
            Poll::Ready(None) => return Some(End::Finished),
            Poll::Ready(Some(Err(error))) => return Some(End::Failed(error.to_string())),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        match frame {
            Ok(NodeFrame::Reply { call_id, payload }) => state.answer(call_id, payload),
            Ok(NodeFrame::Refused { error }) | Err(error) => {
                state.refuse(error);
                return Some(End::Refused);
            }
        }
    }
}
