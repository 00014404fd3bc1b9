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

use std::collections::VecDeque;

use kt_core::backend::EncodedReply;
use rustc_hash::FxHashMap;

/// Holes the window may hold beyond its live calls before stragglers move out.
const SLACK: usize = 64;

/// The calls of one route that wait for replies.
#[derive(Default)]
pub(super) struct PendingCalls {
    /// Calls from id `first` on, by `id - first`; `None` once answered.
    window: VecDeque<Option<EncodedReply>>,
    /// The id of `window[0]`.
    first: u64,
    /// How many slots of `window` hold a call.
    in_window: usize,
    /// Calls moved out of the window's way, and calls registered out of order.
    stragglers: FxHashMap<u64, EncodedReply>,
}

impl PendingCalls {
    /// Records call `id` (ids are registered in increasing order).
    pub(super) fn insert(&mut self, id: u64, reply: EncodedReply) {
        if self.window.is_empty() {
            self.first = id;
        }
        let end = self.first + self.window.len() as u64;
        if id < end {
            self.stragglers.insert(id, reply);
            return;
        }
        // Ids a refused call used and never registered leave holes.
        for _ in end..id {
            self.window.push_back(None);
        }
        self.window.push_back(Some(reply));
        self.in_window += 1;
        self.move_stragglers_out();
    }

    /// Takes call `id`'s reply slot, if it is still waiting.
    pub(super) fn remove(&mut self, id: u64) -> Option<EncodedReply> {
        let Some(offset) = id.checked_sub(self.first) else {
            return self.stragglers.remove(&id);
        };
        match self.window.get_mut(offset as usize).and_then(Option::take) {
            Some(reply) => {
                self.in_window -= 1;
                self.drop_answered_front();
                Some(reply)
            }
            // Registered out of order, or not waiting.
            None => self.stragglers.remove(&id),
        }
    }

    /// How many calls wait.
    pub(super) fn len(&self) -> usize {
        self.in_window + self.stragglers.len()
    }

    /// Takes every waiting call's reply slot.
    pub(super) fn drain(&mut self) -> Vec<EncodedReply> {
        let mut all: Vec<EncodedReply> = self.window.drain(..).flatten().collect();
        all.extend(self.stragglers.drain().map(|(_, reply)| reply));
        self.in_window = 0;
        all
    }

    /// Pops answered slots off the front.
    fn drop_answered_front(&mut self) {
        while let Some(None) = self.window.front() {
            self.window.pop_front();
            self.first += 1;
        }
    }

    /// While the window is mostly holes, its oldest calls move to the stragglers.
    fn move_stragglers_out(&mut self) {
        while self.window.len() > 2 * self.in_window + SLACK {
            if let Some(Some(reply)) = self.window.pop_front() {
                self.stragglers.insert(self.first, reply);
                self.in_window -= 1;
            }
            self.first += 1;
            self.drop_answered_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn slot() -> (EncodedReply, oneshot::Receiver<bytes::Bytes>) {
        EncodedReply::channel()
    }

    fn answer(pending: &mut PendingCalls, id: u64) -> bool {
        match pending.remove(id) {
            Some(reply) => {
                reply.deliver(bytes::Bytes::from(id.to_be_bytes().to_vec()));
                true
            }
            None => false,
        }
    }

    #[test]
    fn replies_in_any_order_find_their_calls_once() {
        let mut pending = PendingCalls::default();
        let mut receivers = Vec::new();
        for id in 1..=10 {
            let (reply, rx) = slot();
            pending.insert(id, reply);
            receivers.push(rx);
        }
        for id in [3, 1, 10, 2, 7, 4, 5, 6, 9, 8] {
            assert!(answer(&mut pending, id), "call {id}");
            assert!(!answer(&mut pending, id), "call {id} answered twice");
        }
        assert_eq!(pending.len(), 0);
        assert!(pending.window.is_empty(), "answered slots are dropped");
        for (rx, id) in receivers.iter_mut().zip(1u64..) {
            assert_eq!(rx.try_recv().expect("answered")[..], id.to_be_bytes());
        }
        assert!(!answer(&mut pending, 42), "never registered");
    }

    #[test]
    fn a_call_that_never_returns_does_not_make_the_window_grow() {
        let mut pending = PendingCalls::default();
        let (hung, mut hung_rx) = slot();
        pending.insert(1, hung);
        for id in 2..100_000 {
            pending.insert(id, slot().0);
            assert!(answer(&mut pending, id));
            // At most the hung call and the newest one in it, and the holes allowed.
            assert!(
                pending.window.len() <= 2 * 2 + SLACK,
                "{}",
                pending.window.len()
            );
        }
        assert_eq!(pending.len(), 1);
        assert!(answer(&mut pending, 1), "the straggler is still found");
        assert!(hung_rx.try_recv().is_ok());
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn skipped_ids_and_late_registrations_still_resolve() {
        let mut pending = PendingCalls::default();
        pending.insert(5, slot().0);
        pending.insert(9, slot().0);
        pending.insert(7, slot().0);
        assert_eq!(pending.len(), 3);
        assert!(answer(&mut pending, 7));
        assert!(answer(&mut pending, 5));
        assert!(!answer(&mut pending, 6));
        assert_eq!(pending.drain().len(), 1);
        assert_eq!(pending.len(), 0);
    }
}
