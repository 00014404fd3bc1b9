//! Calls an actor's own task reads from a transport's stream while it is idle.
//!
//! Why: a transport that reads a call stream in a task of its own and puts each call in
//! the mailbox makes every remote call hop from that task to the actor's. Tokio runs a
//! task woken by the running one next on the same thread (its LIFO slot), but at most
//! three times in a row: quinn's endpoint driver, its connection driver, the serving
//! task and the actor's task make four, so the reply's write wakes the connection
//! driver through the run queue, which wakes a sleeping worker thread (about 55 µs on
//! these VMs) that then contends for the connection. So a transport may lend the actor
//! a [`CallSource`]: the actor's task reads the next call itself whenever its mailbox is
//! empty, and runs it at once, as a hand-written server would.
//!
//! The actor holds a source only while it is idle or polling a method for the first
//! time. A method that does not finish in its first poll gives the source back, so the
//! transport reads on while the method runs (a `Kill` must be heard, calls queue up in
//! the mailbox as before); the transport lends it again once every call it read is
//! answered, so that none of its calls is still in the mailbox when the actor reads the
//! next one from the stream (per-caller order, rule O1, is kept). An actor holds up to
//! [`MAX_LENT`] streams (one per caller that reaches it: its driver, other actors) and
//! reads them in turn. Actors that run `&self` calls concurrently never take a source:
//! their batches come from the mailbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::reply::EncodedReply;

/// A transport's stream of calls for one actor, lent to the actor's task
/// ([`crate::backend::EncodedRoute::lend`]).
pub trait CallSource: Send + Sync + 'static {
    /// Reads the next call if one is at hand and hands its method, arguments and reply
    /// to `take`: `Ready(true)`. `Ready(false)` when the transport took the stream back
    /// (the actor drops the source); `Pending` otherwise, with `cx` woken when more
    /// comes. A frame that is not a call is left for the transport, which then reads
    /// again: `Ready(false)`.
    fn poll_call(
        &self,
        cx: &mut Context<'_>,
        take: &mut dyn FnMut(&str, &[u8], EncodedReply),
    ) -> Poll<bool>;

    /// The actor stops reading (a method is running, or the actor stopped): the
    /// transport reads the stream again.
    fn give_back(&self);
}

/// The source an actor holds, if any: part of its cell.
#[derive(Default)]
pub(crate) struct Inbound {
    slot: Mutex<Slot>,
    /// Set by the first lend: until then (an actor that no transport serves) the run loop
    /// does not look here at all.
    wanted: AtomicBool,
}

/// At most this many streams are lent to one actor at a time (its callers' streams
/// beyond them are read by their serving tasks, as before).
pub(crate) const MAX_LENT: usize = 8;

#[derive(Default)]
struct Slot {
    /// The sources lent, the one read from last at the back.
    sources: Vec<Arc<dyn CallSource>>,
    /// The actor's task, as of the last time it looked here while idle: woken when a
    /// source is lent. `None` until it has looked.
    idle: Option<Waker>,
    /// True while the actor's task takes sources (set once it runs; cleared when it
    /// stops).
    open: bool,
}

impl Inbound {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The actor's task reads lent sources from now on.
    pub(crate) fn open(&self) {
        self.slot().open = true;
    }

    /// True once a transport has offered a source: the run loop looks here from then on.
    pub(crate) fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Takes `source` if the actor reads sources, listens for them and has room: the
    /// actor's task reads it from now on. (The first offer only makes the actor listen.)
    pub(crate) fn lend(&self, source: Arc<dyn CallSource>) -> bool {
        self.wanted.store(true, Ordering::Relaxed);
        let idle = {
            let mut slot = self.slot();
            let Some(idle) = slot.idle.clone() else {
                return false;
            };
            if !slot.open || slot.sources.len() >= MAX_LENT {
                return false;
            }
            slot.sources.push(source);
            idle
        };
        idle.wake();
        true
    }

    /// The actor's task, idle: reads the next call from the sources it holds, each in
    /// turn. `Ready` once `take` was handed one.
    pub(crate) fn poll_next(
        &self,
        cx: &mut Context<'_>,
        take: &mut dyn FnMut(&str, &[u8], EncodedReply),
    ) -> Poll<()> {
        let mut at = 0;
        loop {
            let (source, held) = {
                let mut slot = self.slot();
                if !slot.idle.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.idle = Some(cx.waker().clone());
                }
                match slot.sources.get(at) {
                    Some(source) => (source.clone(), slot.sources.len()),
                    None => return Poll::Pending,
                }
            };
            let polled = source.poll_call(cx, take);
            // With one source (the common case) there is no turn to keep: no lock again.
            // (One lent meanwhile woke this task, which looks again.)
            match polled {
                Poll::Pending if at + 1 >= held => return Poll::Pending,
                Poll::Pending => {
                    at += 1;
                    continue;
                }
                Poll::Ready(true) if held == 1 => return Poll::Ready(()),
                Poll::Ready(_) => {}
            }
            let mut slot = self.slot();
            let position = slot.sources.iter().position(|s| Arc::ptr_eq(s, &source));
            match (polled, position) {
                // Read from last: its turn comes after the others'.
                (Poll::Ready(true), Some(position)) => {
                    let read = slot.sources.remove(position);
                    slot.sources.push(read);
                    return Poll::Ready(());
                }
                (Poll::Ready(true), None) => return Poll::Ready(()),
                // Taken back: dropped (the next one moves up to `at`).
                (_, Some(position)) => drop(slot.sources.remove(position)),
                (_, None) => {}
            }
        }
    }

    /// The actor is about to wait for something else than its next call: the sources
    /// go back to their transports.
    pub(crate) fn give_back(&self) {
        // Nothing was ever offered (an actor no transport serves): nothing to give back.
        if !self.is_wanted() {
            return;
        }
        let mut slot = self.slot();
        for source in slot.sources.drain(..) {
            source.give_back();
        }
    }

    /// The actor stopped: its sources go back, and it takes no more.
    pub(crate) fn close(&self) {
        let mut slot = self.slot();
        slot.open = false;
        slot.idle = None;
        for source in slot.sources.drain(..) {
            source.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source with `calls` calls at hand, counting how often it was given back.
    #[derive(Default)]
    struct Counted {
        calls: AtomicUsize,
        given_back: AtomicUsize,
        taken_back: std::sync::atomic::AtomicBool,
    }

    impl CallSource for Counted {
        fn poll_call(
            &self,
            _cx: &mut Context<'_>,
            take: &mut dyn FnMut(&str, &[u8], EncodedReply),
        ) -> Poll<bool> {
            if self.taken_back.load(Ordering::SeqCst) {
                return Poll::Ready(false);
            }
            match self
                .calls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            {
                Ok(_) => {
                    take("m", &[], EncodedReply::channel().0);
                    Poll::Ready(true)
                }
                Err(_) => Poll::Pending,
            }
        }

        fn give_back(&self) {
            self.given_back.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(inbound: &Inbound) -> Poll<()> {
        let mut cx = Context::from_waker(Waker::noop());
        inbound.poll_next(&mut cx, &mut |_, _, _| {})
    }

    #[test]
    fn sources_are_taken_only_while_open_and_up_to_the_bound() {
        let inbound = Inbound::default();
        let source = Arc::new(Counted::default());
        assert!(!inbound.lend(source.clone()), "closed until the actor runs");
        assert!(inbound.is_wanted());
        inbound.open();
        assert!(
            !inbound.lend(source.clone()),
            "the actor has not looked yet"
        );
        assert!(poll(&inbound).is_pending());
        assert!(inbound.lend(source.clone()));
        for _ in 1..MAX_LENT {
            assert!(inbound.lend(Arc::new(Counted::default())));
        }
        assert!(
            !inbound.lend(Arc::new(Counted::default())),
            "at most MAX_LENT"
        );
        inbound.close();
        assert_eq!(source.given_back.load(Ordering::SeqCst), 1);
        assert!(!inbound.lend(source), "closed for good");
    }

    #[test]
    fn calls_are_read_until_the_source_is_given_or_taken_back() {
        let inbound = Inbound::default();
        inbound.open();
        assert!(poll(&inbound).is_pending(), "nothing lent");
        assert!(!inbound.is_wanted(), "nobody offered a source yet");
        let source = Arc::new(Counted::default());
        source.calls.store(2, Ordering::SeqCst);
        assert!(inbound.lend(source.clone()));
        assert!(poll(&inbound).is_ready());
        assert!(poll(&inbound).is_ready());
        assert!(poll(&inbound).is_pending(), "no call at hand");
        inbound.give_back();
        assert_eq!(source.given_back.load(Ordering::SeqCst), 1);
        inbound.give_back();
        assert_eq!(source.given_back.load(Ordering::SeqCst), 1, "once");
        // Taken back by its transport: dropped, the others still read, in turn.
        let (first, second) = (Arc::new(Counted::default()), Arc::new(Counted::default()));
        first.calls.store(2, Ordering::SeqCst);
        second.calls.store(1, Ordering::SeqCst);
        assert!(inbound.lend(source.clone()));
        assert!(inbound.lend(first.clone()));
        assert!(inbound.lend(second.clone()));
        source.taken_back.store(true, Ordering::SeqCst);
        assert!(poll(&inbound).is_ready());
        assert_eq!(first.calls.load(Ordering::SeqCst), 1, "first read");
        assert!(poll(&inbound).is_ready());
        assert_eq!(
            second.calls.load(Ordering::SeqCst),
            0,
            "then second, in turn"
        );
        assert!(poll(&inbound).is_ready());
        assert_eq!(first.calls.load(Ordering::SeqCst), 0);
        assert!(poll(&inbound).is_pending());
        assert_eq!(lock_len(&inbound), 2, "the one taken back is dropped");
        inbound.give_back();
        assert_eq!(lock_len(&inbound), 0);
        assert_eq!(first.given_back.load(Ordering::SeqCst), 1);
        assert_eq!(second.given_back.load(Ordering::SeqCst), 1);
    }

    fn lock_len(inbound: &Inbound) -> usize {
        inbound.slot().sources.len()
    }
}
