//! [`CallStream`]: who reads an incoming call stream — its serving task, or the actor's
//! own task while it is idle.
//!
//! Why the actor reads: a call read by the serving task and put in the mailbox wakes the
//! actor's task, the fourth task to run after the packet arrives (quinn's endpoint
//! driver, its connection driver, the serving task, the actor): tokio runs only three
//! woken tasks in a row on the same thread, so the reply's write wakes the connection
//! driver through the run queue and, with it, a sleeping worker thread that then
//! contends for the connection. The actor's task reading the stream itself keeps the
//! round trip on one thread, as a hand-written server's does (see `kt_core`'s
//! `CallSource`).
//!
//! Who reads when: the serving task lends the stream to the actor whenever every call it
//! read is answered (none of them is still in the mailbox, so the actor's next call from
//! the stream cannot overtake one: rule O1). The actor gives it back when a method does
//! not finish in its first poll, when it stops, and when it meets a frame that is not a
//! call (a `Kill`, a `Release`, the stream's end, bytes that cannot be read): that one is
//! left for the serving task, which handles it as it always has. While draining, or when
//! the serving task stops, the stream is taken back for good.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use kt_core::Error;
use kt_core::backend::{CallSource, EncodedReply, EncodedRoute};

use super::{Frames, Replies, frame_error};
use crate::node::lock;
use crate::wire::call::{CallerFrame, MAX_METHODS_PER_STREAM, decode_caller_frame};

/// What the stream gave: a frame, or an error for bytes that cannot be read; `None` at
/// its end.
pub(super) type Item = Option<Result<CallerFrame, Error>>;

/// An incoming call stream, read by its serving task or lent to the actor's task.
pub(super) struct CallStream {
    inner: Mutex<Inner>,
    /// Counts shared with the stream's replies.
    calls: Arc<Calls>,
    /// The actor the calls are for (weak: the actor may hold this stream).
    actor: Weak<dyn EncodedRoute>,
}

/// What a call stream and its replies both keep track of.
#[derive(Default)]
pub(super) struct Calls {
    /// Calls read from the stream and not answered yet, whoever read them.
    pub(super) unanswered: AtomicUsize,
    /// Set when a call is read with more bytes already at hand: its reply may wait to
    /// go out with the next ones.
    pub(super) more_at_hand: AtomicBool,
    /// True while the actor's task reads (a fast check for [`CallStream::try_lend`]).
    pub(super) lent: AtomicBool,
}

struct Inner {
    /// The stream's frames; `None` once the serving task stopped.
    frames: Option<Frames>,
    /// The methods the caller defined, by index.
    methods: Methods,
    /// Where the replies go; `None` once the serving task stopped.
    replies: Option<Arc<Replies>>,
    reader: Reader,
    /// What the actor read and left for the serving task.
    left: Option<Item>,
    /// The serving task handles a frame it read (the stream is not lent meanwhile).
    in_hand: bool,
    /// The serving task's waker, as of its last poll: woken when the stream comes back.
    serving: Option<Waker>,
    /// The serving task waits for the stream to come back (it found the actor reading).
    serving_waits: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reader {
    Serving,
    Actor,
    /// The serving task stopped.
    Closed,
}

/// A call to put in the mailbox: what the serving task read.
pub(super) struct ReadCall {
    pub(super) call_id: u64,
    pub(super) method: Arc<str>,
    pub(super) args: bytes::Bytes,
}

impl CallStream {
    /// The stream `frames` of calls for `actor`, counted in `calls`, and its replies,
    /// made by `replies` (which may lend the stream when the last call is answered).
    pub(super) fn new(
        frames: Frames,
        actor: &Arc<dyn EncodedRoute>,
        calls: Arc<Calls>,
        replies: impl FnOnce(Weak<CallStream>) -> Arc<Replies>,
    ) -> (Arc<Self>, Arc<Replies>) {
        let mut made = None;
        let stream = Arc::new_cyclic(|me| {
            let replies = replies(me.clone());
            made = Some(replies.clone());
            CallStream {
                inner: Mutex::new(Inner {
                    frames: Some(frames),
                    methods: Methods::default(),
                    replies: Some(replies),
                    reader: Reader::Serving,
                    left: None,
                    in_hand: false,
                    serving: None,
                    serving_waits: false,
                }),
                calls,
                actor: Arc::downgrade(actor),
            }
        });
        let replies = made.unwrap_or_else(|| unreachable!("new_cyclic ran the closure"));
        (stream, replies)
    }

    /// The serving task's side: the next frame (methods defined, calls with their
    /// method's name), once the actor is not reading. The serving task calls
    /// [`CallStream::done_with_frame`] when it has handled it.
    pub(super) fn poll_serving(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<Served> {
        let lend = {
            let mut inner = lock(&self.inner);
            if let Some(item) = inner.left.take() {
                inner.in_hand = true;
                return Poll::Ready(self.serve(&mut inner, item));
            }
            // Kept for when the actor gives the stream back: QUIC then wakes whoever
            // read last, the actor.
            if !inner
                .serving
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.serving = Some(cx.waker().clone());
            }
            if inner.reader != Reader::Serving {
                inner.serving_waits = true;
                return Poll::Pending;
            }
            let Some(frames) = inner.frames.as_mut() else {
                return Poll::Ready(Served::End);
            };
            match std::pin::Pin::new(frames).poll_next(cx) {
                Poll::Ready(item) => {
                    inner.in_hand = true;
                    let item =
                        item.map(|body| body.map_err(frame_error).and_then(decode_caller_frame));
                    return Poll::Ready(self.serve(&mut inner, item));
                }
                Poll::Pending => self.calls.unanswered.load(Ordering::Acquire) == 0,
            }
        };
        // Nothing to read, and every call read is answered: the actor reads next.
        if lend {
            self.try_lend();
        }
        Poll::Pending
    }

    /// Why the actor is gone, for a call it dropped unanswered (`None` once nothing of
    /// it is left).
    pub(super) fn actor_gone(&self) -> Option<Error> {
        self.actor.upgrade().map(|actor| actor.gone())
    }

    /// The serving task has handled the frame it read (its call is in the mailbox).
    pub(super) fn done_with_frame(&self) {
        lock(&self.inner).in_hand = false;
    }

    /// Lends the stream to the actor's task if nobody reads it and every call read is
    /// answered (called by the serving task when it finds nothing to read, and when the
    /// last call is answered).
    pub(super) fn try_lend(self: &Arc<Self>) {
        if self.calls.lent.load(Ordering::Acquire) {
            return;
        }
        // Never waits: whoever holds the lock reads or handles a frame, and lends the
        // stream itself once it is done.
        let Ok(mut inner) = self.inner.try_lock() else {
            return;
        };
        if inner.reader != Reader::Serving
            || inner.in_hand
            || inner.left.is_some()
            || self.calls.unanswered.load(Ordering::Acquire) != 0
        {
            return;
        }
        inner.reader = Reader::Actor;
        self.calls.lent.store(true, Ordering::Release);
        drop(inner);
        let taken = self
            .actor
            .upgrade()
            .is_some_and(|actor| actor.lend(self.clone()));
        if !taken {
            // Nobody else read meanwhile, so QUIC still wakes the serving task: it need
            // only be woken if it saw the stream lent and waits for it.
            self.back_to_serving(None, false);
        }
    }

    /// The serving task reads again (`left`, if any, is the frame it handles next). It
    /// is woken if the actor read (`actor_read`: QUIC now wakes the actor, not it) or if
    /// it waits for the stream.
    fn back_to_serving(&self, left: Option<Item>, actor_read: bool) {
        let serving = {
            let mut inner = lock(&self.inner);
            if inner.reader == Reader::Actor {
                inner.reader = Reader::Serving;
            }
            if left.is_some() {
                inner.left = left;
            }
            self.calls.lent.store(false, Ordering::Release);
            let wake = actor_read || inner.serving_waits;
            inner.serving_waits = false;
            wake.then(|| inner.serving.clone()).flatten()
        };
        if let Some(serving) = serving {
            serving.wake();
        }
    }

    /// The serving task stops: the actor reads no more, and the stream and the replies'
    /// share go.
    pub(super) fn close(&self) {
        let (frames, replies) = {
            let mut inner = lock(&self.inner);
            inner.reader = Reader::Closed;
            self.calls.lent.store(false, Ordering::Release);
            (inner.frames.take(), inner.replies.take())
        };
        drop((frames, replies));
    }
}

/// What the serving task read.
pub(super) enum Served {
    /// A call for the mailbox (counted as unanswered already).
    Call(ReadCall),
    /// A method defined: nothing more to do.
    Defined,
    /// The caller's last owning handle is gone.
    Release,
    /// Kill the actor now.
    Kill,
    /// The stream ended.
    End,
    /// The stream's framing is lost: nothing after this can be read reliably.
    Broken(Error),
}

impl CallStream {
    /// Defines methods, and names and counts calls, for the serving task.
    fn serve(&self, inner: &mut Inner, item: Item) -> Served {
        match item {
            Some(Ok(CallerFrame::Call {
                call_id,
                method,
                args,
            })) => match inner.methods.name(method) {
                Ok(method) => {
                    self.calls.unanswered.fetch_add(1, Ordering::AcqRel);
                    // Batching follows the unanswered count, not what the actor last saw.
                    self.calls.more_at_hand.store(false, Ordering::Relaxed);
                    Served::Call(ReadCall {
                        call_id,
                        method: method.clone(),
                        args,
                    })
                }
                Err(error) => Served::Broken(error),
            },
            Some(Ok(CallerFrame::Method { index, name })) => {
                match inner.methods.define(index, name) {
                    Ok(()) => Served::Defined,
                    Err(error) => Served::Broken(error),
                }
            }
            Some(Ok(CallerFrame::Release)) => Served::Release,
            Some(Ok(CallerFrame::Kill)) => Served::Kill,
            Some(Err(error)) => Served::Broken(error),
            None => Served::End,
        }
    }
}

impl CallSource for CallStream {
    fn poll_call(
        &self,
        cx: &mut Context<'_>,
        take: &mut dyn FnMut(&str, &[u8], EncodedReply),
    ) -> Poll<bool> {
        let mut inner = lock(&self.inner);
        if inner.reader != Reader::Actor {
            return Poll::Ready(false);
        }
        let left = loop {
            let Some(frames) = inner.frames.as_mut() else {
                return Poll::Ready(false);
            };
            let body = match std::pin::Pin::new(&mut *frames).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(body))) => body,
                Poll::Ready(other) => {
                    break other
                        .map(|body| body.map_err(frame_error).and_then(decode_caller_frame));
                }
            };
            let more_at_hand = !frames.read_buffer().is_empty();
            match decode_caller_frame(body) {
                Ok(CallerFrame::Call {
                    call_id,
                    method,
                    args,
                }) => {
                    let Inner {
                        methods, replies, ..
                    } = &mut *inner;
                    let name = match methods.name(method) {
                        Ok(name) => name,
                        Err(error) => break Some(Err(error)),
                    };
                    let Some(replies) = replies.as_ref() else {
                        return Poll::Ready(false);
                    };
                    self.calls.unanswered.fetch_add(1, Ordering::AcqRel);
                    self.calls
                        .more_at_hand
                        .store(more_at_hand, Ordering::Relaxed);
                    take(name, &args, EncodedReply::shared(replies.clone(), call_id));
                    return Poll::Ready(true);
                }
                Ok(CallerFrame::Method { index, name }) => {
                    if let Err(error) = inner.methods.define(index, name) {
                        break Some(Err(error));
                    }
                }
                other => break Some(other),
            }
        };
        drop(inner);
        self.back_to_serving(Some(left), true);
        Poll::Ready(false)
    }

    fn give_back(&self) {
        self.back_to_serving(None, true);
    }
}

/// The methods a caller defined on one call stream, by index.
#[derive(Default)]
struct Methods(Vec<Arc<str>>);

impl Methods {
    fn define(&mut self, index: u16, name: String) -> Result<(), Error> {
        if usize::from(index) != self.0.len() || self.0.len() >= MAX_METHODS_PER_STREAM {
            return Err(Error::Protocol {
                message: format!(
                    "method index {index} defined out of order (expected {})",
                    self.0.len()
                ),
            });
        }
        self.0.push(name.into());
        Ok(())
    }

    fn name(&self, index: u16) -> Result<&Arc<str>, Error> {
        self.0
            .get(usize::from(index))
            .ok_or_else(|| Error::Protocol {
                message: format!("a call names method index {index}, which was never defined"),
            })
    }
}
