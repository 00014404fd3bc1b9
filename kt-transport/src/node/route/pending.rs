//! [`PendingCalls`]: a route's calls waiting for their replies, by call id.
//!
//! A route numbers its calls 1, 2, 3, … and replies mostly come back in that order, so
//! the calls live in a window indexed by `id - first`: registering appends, answering
//! takes a slot near the front, and neighbouring calls share cache lines. (A hash map
//! scattered them: with 10,000 calls in flight, finding each reply's slot was the
//! driver's costliest step, a cache miss on a line the caller's thread had just
//! written.) A call that stays unanswered while many later ones are answered (a method
//! that never returns) would pin the window's front and let it grow with every later
//! call: once the window is mostly holes, such calls move to a map of stragglers, so
//! the window stays within twice the calls it holds.
//!
//! A typed caller's reply stays in its slot until the caller's `Call` collects it
//! ([`Slot::Waiting`], then [`Slot::Answered`]): no channel per call. Other calls (a
//! worker forwarding, a restarting route) bring a reply slot of their own
//! ([`Slot::Sink`]), answered as the reply comes.

use std::collections::VecDeque;
use std::task::Waker;

use kt_core::backend::{EncodedReply, KeptReply};
use rustc_hash::FxHashMap;

/// Holes the window may hold beyond its live calls before stragglers move out.
const SLACK: usize = 64;

/// One pending call.
pub(super) enum Slot {
    /// The reply goes to this slot as it comes.
    Sink(EncodedReply),
    /// The caller collects the reply here; the waker is its task's, once it has looked.
    Waiting(Option<Waker>),
    /// The reply came; the caller has yet to collect it.
    Answered(KeptReply),
    /// The caller stopped waiting: the reply is dropped when it comes.
    Forgotten,
}

impl Slot {
    fn is_answered(&self) -> bool {
        matches!(self, Slot::Answered(_))
    }
}

/// What a reply was for.
pub(super) enum Answered {
    /// A reply slot of the call's own, and its reply, to deliver once no lock is held.
    Sink(EncodedReply, KeptReply),
    /// A caller to wake (once no lock is held): its reply is in the window.
    Wake(Option<Waker>),
    /// Nobody waits for it.
    Nobody,
}

/// The calls of one route that wait for replies.
#[derive(Default)]
pub(super) struct PendingCalls {
    /// Calls from id `first` on, by `id - first`; `None` once collected.
    window: VecDeque<Option<Slot>>,
    /// The id of `window[0]`.
    first: u64,
    /// How many slots of `window` hold a call.
    in_window: usize,
    /// How many calls, in the window or not, have no reply yet.
    unanswered: usize,
    /// Calls moved out of the window's way, and calls registered out of order.
    stragglers: FxHashMap<u64, Slot>,
}

impl PendingCalls {
    /// Records call `id`, which has no reply yet (ids are registered in increasing
    /// order).
    pub(super) fn insert(&mut self, id: u64, slot: Slot) {
        self.unanswered += 1;
        if self.window.is_empty() {
            self.first = id;
        }
        let end = self.first + self.window.len() as u64;
        if id < end {
            self.stragglers.insert(id, slot);
            return;
        }
        // Ids a refused call used and never registered leave holes.
        for _ in end..id {
            self.window.push_back(None);
        }
        self.window.push_back(Some(slot));
        self.in_window += 1;
        self.move_stragglers_out();
    }

    /// Records the reply of call `id`; says whom to tell.
    pub(super) fn answer(&mut self, id: u64, reply: KeptReply) -> Answered {
        let Some(slot) = self.slot_mut(id) else {
            return Answered::Nobody;
        };
        let answered = match slot {
            Slot::Waiting(waker) => {
                let waker = waker.take();
                *slot = Slot::Answered(reply);
                self.unanswered -= 1;
                return Answered::Wake(waker);
            }
            Slot::Answered(_) => return Answered::Nobody,
            Slot::Sink(_) | Slot::Forgotten => self.remove(id),
        };
        self.unanswered -= 1;
        match answered {
            Some(Slot::Sink(slot)) => Answered::Sink(slot, reply),
            _ => Answered::Nobody,
        }
    }

    /// Collects the reply of call `id` for its caller: `Some(Ok)` once it came,
    /// `Some(Err(()))` if it never will (the call is not pending: it failed), `None`
    /// while it is on its way, keeping `waker` to wake when it comes.
    /// (With no `waker`, none is kept: the caller is about to read the replies itself.)
    pub(super) fn collect(
        &mut self,
        id: u64,
        waker: Option<&Waker>,
    ) -> Option<Result<KeptReply, ()>> {
        match self.slot_mut(id) {
            Some(Slot::Waiting(slot)) => {
                match (slot.as_ref(), waker) {
                    (Some(known), Some(waker)) if known.will_wake(waker) => {}
                    _ => *slot = waker.cloned(),
                }
                None
            }
            Some(Slot::Answered(_)) => match self.remove(id) {
                Some(Slot::Answered(reply)) => Some(Ok(reply)),
                _ => Some(Err(())),
            },
            Some(Slot::Sink(_) | Slot::Forgotten) | None => Some(Err(())),
        }
    }

    /// The caller of call `id` stopped waiting: a reply that came is dropped, one on
    /// its way will be.
    pub(super) fn forget(&mut self, id: u64) {
        match self.slot_mut(id) {
            Some(slot @ Slot::Waiting(_)) => *slot = Slot::Forgotten,
            Some(Slot::Answered(_)) => {
                self.remove(id);
            }
            _ => {}
        }
    }

    /// True while call `id` waits for its reply.
    pub(super) fn is_unanswered(&self, id: u64) -> bool {
        let in_window = id
            .checked_sub(self.first)
            .and_then(|offset| self.window.get(offset as usize))
            .and_then(Option::as_ref);
        let slot = in_window.or_else(|| self.stragglers.get(&id));
        slot.is_some_and(|slot| !slot.is_answered())
    }

    /// How many calls have no reply yet.
    pub(super) fn unanswered(&self) -> usize {
        self.unanswered
    }

    /// Takes every call that has no reply yet (replies that came stay for their
    /// callers).
    pub(super) fn drain_unanswered(&mut self) -> Vec<Slot> {
        let mut all = Vec::new();
        for entry in self.window.iter_mut() {
            if entry.as_ref().is_some_and(|slot| !slot.is_answered()) {
                all.extend(entry.take());
                self.in_window -= 1;
            }
        }
        self.drop_collected_front();
        self.stragglers.retain(|_, slot| match slot.is_answered() {
            true => true,
            false => {
                all.push(std::mem::replace(slot, Slot::Forgotten));
                false
            }
        });
        self.unanswered = 0;
        all
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let in_window = id
            .checked_sub(self.first)
            .and_then(|offset| self.window.get(offset as usize))
            .is_some_and(Option::is_some);
        match in_window {
            true => self.window[(id - self.first) as usize].as_mut(),
            // Registered out of order, or moved out of the way.
            false => self.stragglers.get_mut(&id),
        }
    }

    /// Takes call `id`'s slot out, whatever it holds.
    fn remove(&mut self, id: u64) -> Option<Slot> {
        let in_window = id
            .checked_sub(self.first)
            .and_then(|offset| self.window.get_mut(offset as usize))
            .and_then(Option::take);
        match in_window {
            Some(slot) => {
                self.in_window -= 1;
                self.drop_collected_front();
                Some(slot)
            }
            None => self.stragglers.remove(&id),
        }
    }

    /// Pops collected slots off the front.
    fn drop_collected_front(&mut self) {
        while let Some(None) = self.window.front() {
            self.window.pop_front();
            self.first += 1;
        }
    }

    /// While the window is mostly holes, its oldest calls move to the stragglers.
    fn move_stragglers_out(&mut self) {
        while self.window.len() > 2 * self.in_window + SLACK {
            if let Some(Some(slot)) = self.window.pop_front() {
                self.stragglers.insert(self.first, slot);
                self.in_window -= 1;
            }
            self.first += 1;
            self.drop_collected_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use tokio::sync::oneshot;

    fn sink() -> (Slot, oneshot::Receiver<bytes::Bytes>) {
        let (reply, rx) = EncodedReply::channel();
        (Slot::Sink(reply), rx)
    }

    fn reply_of(id: u64) -> KeptReply {
        KeptReply::copy_from(&id.to_be_bytes())
    }

    /// Answers call `id` as a route's reader does; false if nobody was told.
    fn answer(pending: &mut PendingCalls, id: u64) -> bool {
        match pending.answer(id, reply_of(id)) {
            Answered::Sink(slot, reply) => {
                slot.deliver_kept(reply);
                true
            }
            Answered::Wake(_) => true,
            Answered::Nobody => false,
        }
    }

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Waker, Arc<CountWakes>) {
        let count = Arc::new(CountWakes::default());
        (Waker::from(count.clone()), count)
    }

    /// Wakes what `answered` says to wake, as the route does once its lock is released.
    fn tell(answered: Answered) {
        if let Answered::Wake(Some(waker)) = answered {
            waker.wake();
        }
    }

    #[test]
    fn replies_in_any_order_find_their_calls_once() {
        let mut pending = PendingCalls::default();
        let mut receivers = Vec::new();
        for id in 1..=10 {
            let (slot, rx) = sink();
            pending.insert(id, slot);
            receivers.push(rx);
        }
        for id in [3, 1, 10, 2, 7, 4, 5, 6, 9, 8] {
            assert!(answer(&mut pending, id), "call {id}");
            assert!(!answer(&mut pending, id), "call {id} answered twice");
        }
        assert_eq!(pending.unanswered(), 0);
        assert!(pending.window.is_empty(), "answered slots are dropped");
        for (rx, id) in receivers.iter_mut().zip(1u64..) {
            assert_eq!(rx.try_recv().expect("answered")[..], id.to_be_bytes());
        }
        assert!(!answer(&mut pending, 42), "never registered");
    }

    #[test]
    fn a_kept_reply_waits_for_its_caller_and_wakes_it_once() {
        let mut pending = PendingCalls::default();
        let (waker, wakes) = waker();
        pending.insert(1, Slot::Waiting(None));
        pending.insert(2, Slot::Waiting(None));
        assert!(
            pending.collect(1, Some(&waker)).is_none(),
            "not answered yet"
        );
        assert!(
            pending.collect(1, Some(&waker)).is_none(),
            "looked again: same waker"
        );
        // Answered before its caller looked: nobody to wake, the reply stays.
        assert!(matches!(
            pending.answer(2, reply_of(2)),
            Answered::Wake(None)
        ));
        tell(pending.answer(1, reply_of(1)));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(pending.unanswered(), 0, "answered, even if not collected");
        assert!(!answer(&mut pending, 1), "answered twice");
        let first = pending
            .collect(1, Some(&waker))
            .expect("ready")
            .expect("a reply");
        assert_eq!(first.as_slice(), 1u64.to_be_bytes());
        let second = pending
            .collect(2, Some(&waker))
            .expect("ready")
            .expect("a reply");
        assert_eq!(second.as_slice(), 2u64.to_be_bytes());
        assert!(pending.window.is_empty(), "collected slots are dropped");
        assert_eq!(
            pending.collect(1, Some(&waker)).map(|c| c.is_err()),
            Some(true)
        );
    }

    #[test]
    fn a_forgotten_call_leaves_nothing_behind() {
        let mut pending = PendingCalls::default();
        pending.insert(1, Slot::Waiting(None));
        pending.insert(2, Slot::Waiting(None));
        pending.forget(1);
        assert_eq!(pending.unanswered(), 2, "its reply is still on its way");
        assert!(answer(&mut pending, 2));
        pending.forget(2);
        assert!(!answer(&mut pending, 1), "nobody waits for it");
        assert_eq!(pending.unanswered(), 0);
        assert!(pending.window.is_empty());
        assert!(pending.stragglers.is_empty());
    }

    #[test]
    fn a_route_failing_its_calls_wakes_waiters_and_keeps_replies_that_came() {
        let mut pending = PendingCalls::default();
        let (waker, wakes) = waker();
        pending.insert(1, Slot::Waiting(None));
        pending.insert(2, Slot::Waiting(None));
        let (slot, mut rx) = sink();
        pending.insert(3, slot);
        pending.insert(4, Slot::Waiting(None));
        pending.forget(4);
        assert!(pending.collect(2, Some(&waker)).is_none());
        tell(pending.answer(1, reply_of(1)));
        let failed = pending.drain_unanswered();
        assert_eq!(
            failed.len(),
            3,
            "2 waiting, 3 with its own slot, 4 forgotten"
        );
        for slot in failed {
            match slot {
                Slot::Waiting(Some(waker)) => waker.wake(),
                Slot::Sink(reply) => reply.fail(kt_core::Error::NoRuntime),
                _ => {}
            }
        }
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "call 2's caller learns it"
        );
        assert!(rx.try_recv().is_ok(), "call 3's slot is answered");
        assert_eq!(
            pending.collect(2, Some(&waker)).map(|c| c.is_err()),
            Some(true)
        );
        let kept = pending
            .collect(1, Some(&waker))
            .expect("ready")
            .expect("kept");
        assert_eq!(
            kept.as_slice(),
            1u64.to_be_bytes(),
            "an acknowledged result stays"
        );
        assert_eq!(pending.unanswered(), 0);
    }

    #[test]
    fn a_call_that_never_returns_does_not_make_the_window_grow() {
        let mut pending = PendingCalls::default();
        let (hung, mut hung_rx) = sink();
        pending.insert(1, hung);
        for id in 2..100_000 {
            pending.insert(id, sink().0);
            assert!(answer(&mut pending, id));
            // At most the hung call and the newest one in it, and the holes allowed.
            assert!(
                pending.window.len() <= 2 * 2 + SLACK,
                "{}",
                pending.window.len()
            );
        }
        assert_eq!(pending.unanswered(), 1);
        assert!(answer(&mut pending, 1), "the straggler is still found");
        assert!(hung_rx.try_recv().is_ok());
        assert_eq!(pending.unanswered(), 0);
    }

    #[test]
    fn skipped_ids_and_late_registrations_still_resolve() {
        let mut pending = PendingCalls::default();
        pending.insert(5, sink().0);
        pending.insert(9, sink().0);
        pending.insert(7, sink().0);
        assert_eq!(pending.unanswered(), 3);
        assert!(answer(&mut pending, 7));
        assert!(answer(&mut pending, 5));
        assert!(!answer(&mut pending, 6));
        assert_eq!(pending.drain_unanswered().len(), 1);
        assert_eq!(pending.unanswered(), 0);
    }
}
