//! [`OrderedSender`]: a bounded queue whose `send` never blocks, never drops, and never
//! reorders (rules E1, O1, B1 in [`crate::semantics`]).
//!
//! Items go straight into a bounded tokio channel while it has room. When it is full,
//! an item is *parked* in an ordered queue beside it, and a flusher task moves parked
//! items in, oldest first, as room frees up; while anything is parked, later items park
//! behind it so that nothing overtakes. The sender learns when a parked item got in
//! through [`Accepted::Later`]. Actor mailboxes are built on it, and so are the
//! transports' outgoing call queues.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::waiting_line::Ticket;

/// Whether a sent item is in the queue yet.
#[derive(Debug)]
pub enum Accepted {
    /// The item is in the queue (or was answered at once because the receiver is gone).
    Now,
    /// The queue was full: the item is parked in order; the receiver fires when it gets
    /// into the queue, and fails if the receiving side closed first.
    Later(oneshot::Receiver<()>),
    /// The item waits in a [`WaitingLine`](crate::backend::WaitingLine) that admits many
    /// at a time; the ticket says when it got in.
    InLine(Ticket),
}

impl Accepted {
    /// Resolves once the item is in the queue (`true`), or once it never will be
    /// (`false`: the receiving side closed first).
    pub async fn admitted(self) -> bool {
        match self {
            Accepted::Now => true,
            Accepted::Later(rx) => rx.await.is_ok(),
            Accepted::InLine(ticket) => ticket.admitted().await,
        }
    }
}

/// What to do with an item that can no longer be delivered, and why it cannot.
pub struct Undeliverable<M> {
    /// Hands the item back to its sender with the error (answers a call, say).
    pub bounce: fn(M, Error),
    /// The error to bounce with, computed when it happens (the cause may be known only then).
    pub reason: Box<dyn Fn() -> Error + Send + Sync>,
    /// The error for an item past the parking bound, given the bound.
    pub overloaded: Box<dyn Fn(usize) -> Error + Send + Sync>,
}

/// How many items may park beside a full queue, per slot of the queue's capacity.
pub const PARKED_PER_SLOT: usize = 16;

/// The fewest items that may park beside a full queue, however small it is.
pub const MIN_PARKED: usize = 64 * 1024;

/// How many items may park beside a full queue of `capacity` (rule B1): a producer that
/// never waits is refused past it instead of growing memory without limit.
pub fn parking_limit(capacity: usize) -> usize {
    capacity.saturating_mul(PARKED_PER_SLOT).max(MIN_PARKED)
}

struct Parked<M> {
    queue: VecDeque<(M, oneshot::Sender<()>)>,
    flusher_running: bool,
}

/// The sending side of a bounded, ordered, never-dropping queue.
pub struct OrderedSender<M: Send + 'static> {
    me: Weak<OrderedSender<M>>,
    tx: mpsc::Sender<M>,
    /// True while items are parked: later items must park behind them to keep order.
    parking: AtomicBool,
    parked: Mutex<Parked<M>>,
    /// The most items parked at once.
    parking_limit: usize,
    undeliverable: Undeliverable<M>,
    runtime: tokio::runtime::Handle,
}

impl<M: Send + 'static> OrderedSender<M> {
    /// A queue holding `capacity` items before parking; the flusher runs on `runtime`.
    pub fn new(
        capacity: usize,
        runtime: tokio::runtime::Handle,
        undeliverable: Undeliverable<M>,
    ) -> (Arc<Self>, mpsc::Receiver<M>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sender = Arc::new_cyclic(|me| OrderedSender {
            me: me.clone(),
            tx,
            parking: AtomicBool::new(false),
            parked: Mutex::new(Parked {
                queue: VecDeque::new(),
                flusher_running: false,
            }),
            parking_limit: parking_limit(capacity.max(1)),
            undeliverable,
            runtime,
        });
        (sender, rx)
    }

    /// Puts `item` in the queue now, or parks it in order if the queue is full. An item
    /// for a closed queue is bounced at once, and so is an item past the parking bound
    /// (with the `overloaded` error): nothing is dropped silently, nothing grows unbounded.
    pub fn send(&self, item: M) -> Accepted {
        if self.parking.load(Ordering::Acquire) {
            return self.park(item);
        }
        match self.tx.try_send(item) {
            Ok(()) => Accepted::Now,
            Err(mpsc::error::TrySendError::Full(item)) => self.park(item),
            Err(mpsc::error::TrySendError::Closed(item)) => {
                self.bounce(item);
                Accepted::Now
            }
        }
    }

    fn bounce(&self, item: M) {
        (self.undeliverable.bounce)(item, (self.undeliverable.reason)());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parked<M>> {
        self.parked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn park(&self, item: M) -> Accepted {
        let mut parked = self.lock();
        if parked.queue.len() >= self.parking_limit {
            drop(parked);
            (self.undeliverable.bounce)(item, (self.undeliverable.overloaded)(self.parking_limit));
            return Accepted::Now;
        }
        let (accepted_tx, accepted_rx) = oneshot::channel();
        parked.queue.push_back((item, accepted_tx));
        if !parked.flusher_running {
            let Some(me) = self.me.upgrade() else {
                // Only reachable while the sender itself is being dropped.
                let stranded: Vec<_> = parked.queue.drain(..).collect();
                drop(parked);
                stranded.into_iter().for_each(|(item, _)| self.bounce(item));
                return Accepted::Now;
            };
            parked.flusher_running = true;
            self.parking.store(true, Ordering::Release);
            self.runtime.spawn(async move { me.flush().await });
        }
        Accepted::Later(accepted_rx)
    }

    /// Moves parked items into the queue, oldest first, waiting for room.
    /// Room is reserved before an item leaves the parked queue, so the queue's length is
    /// always the number of items waiting (what the parking bound counts).
    async fn flush(&self) {
        loop {
            let permit = self.tx.reserve().await;
            let (item, accepted) = {
                let mut parked = self.lock();
                match parked.queue.pop_front() {
                    Some(entry) => entry,
                    None => {
                        parked.flusher_running = false;
                        self.parking.store(false, Ordering::Release);
                        return;
                    }
                }
            };
            match permit {
                Ok(permit) => {
                    permit.send(item);
                    let _ = accepted.send(());
                }
                // The receiver is gone: this item and every later one bounce.
                Err(_) => self.bounce(item),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// A test item: a number and where to report its bounce.
    type Item = (u32, Option<oneshot::Sender<Error>>);

    fn sender(capacity: usize) -> (Arc<OrderedSender<Item>>, mpsc::Receiver<Item>) {
        OrderedSender::new(
            capacity,
            tokio::runtime::Handle::current(),
            Undeliverable {
                bounce: |(_, tx), error| {
                    if let Some(tx) = tx {
                        let _ = tx.send(error);
                    }
                },
                reason: Box::new(|| Error::NoRuntime),
                overloaded: Box::new(|limit| Error::Protocol {
                    message: format!("over {limit}"),
                }),
            },
        )
    }

    #[tokio::test]
    async fn parked_items_arrive_in_order_after_the_ones_that_fit() {
        let (tx, mut rx) = sender(2);
        let accepted: Vec<_> = (0..6).map(|i| tx.send((i, None))).collect();
        assert!(matches!(accepted[0], Accepted::Now));
        assert!(matches!(accepted[1], Accepted::Now));
        assert!(
            accepted[2..]
                .iter()
                .all(|a| matches!(a, Accepted::Later(_)))
        );
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(rx.recv().await.expect("item").0);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn items_past_the_parking_bound_are_bounced_and_the_rest_arrive_in_order() {
        let (tx, mut rx) = sender(1);
        let limit = parking_limit(1);
        let _ = tx.send((0, None));
        for i in 1..=limit as u32 {
            assert!(matches!(tx.send((i, None)), Accepted::Later(_)));
        }
        let (bounced_tx, bounced_rx) = oneshot::channel();
        assert!(matches!(
            tx.send((u32::MAX, Some(bounced_tx))),
            Accepted::Now
        ));
        let error = bounced_rx.await.expect("bounced at once");
        assert_eq!(
            error,
            Error::Protocol {
                message: format!("over {limit}")
            }
        );
        for i in 0..=limit as u32 {
            assert_eq!(rx.recv().await.expect("item").0, i);
        }
    }

    #[tokio::test]
    async fn parked_items_are_bounced_when_the_receiver_closes() {
        let (tx, rx) = sender(1);
        let _ = tx.send((0, None));
        let (bounced_tx, bounced_rx) = oneshot::channel();
        let accepted = tx.send((1, Some(bounced_tx)));
        drop(rx);
        assert_eq!(bounced_rx.await.expect("bounced"), Error::NoRuntime);
        let Accepted::Later(signal) = accepted else {
            panic!("should have parked")
        };
        assert!(
            signal.now_or_never().expect("settled").is_err(),
            "never accepted"
        );
    }
}
