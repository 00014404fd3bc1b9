//! [`WaitingLine`]: the items a sender keeps back, admitted in order and many at a time,
//! each holding a [`Ticket`] that tells it when it got in.
//!
//! A transport that keeps calls back past an actor's mailbox bound (rule B1) lets them
//! go in batches as replies free room. A one-shot channel per kept-back call would cost
//! an allocation for each; a line costs one watch channel for all of them: the n-th
//! item to join holds ticket n and is in once the line has admitted n items.

use tokio::sync::watch;

/// How far a line has got.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// How many items have been admitted, from the first to join.
    admitted: u64,
    /// Nobody waiting will be admitted any more.
    closed: bool,
}

/// The items a sender keeps back, in the order they joined.
#[derive(Debug)]
pub struct WaitingLine {
    progress: watch::Sender<Progress>,
    /// How many items have joined.
    joined: u64,
}

impl Default for WaitingLine {
    fn default() -> Self {
        WaitingLine::new()
    }
}

impl WaitingLine {
    /// An empty line.
    pub fn new() -> Self {
        WaitingLine {
            progress: watch::Sender::new(Progress::default()),
            joined: 0,
        }
    }

    /// The next item joins the line: its ticket resolves once it is admitted.
    pub fn join(&mut self) -> Ticket {
        self.joined += 1;
        Ticket {
            progress: self.progress.subscribe(),
            number: self.joined,
        }
    }

    /// The next `count` items in line are admitted.
    pub fn admit(&self, count: u64) {
        if count > 0 {
            self.progress.send_modify(|p| p.admitted += count);
        }
    }

    /// None of the items waiting will be admitted (their sender is gone): their tickets
    /// resolve as refused. Items that join later are refused at once.
    pub fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
    }
}

/// One item's place in a [`WaitingLine`].
#[derive(Debug)]
pub struct Ticket {
    progress: watch::Receiver<Progress>,
    number: u64,
}

impl Ticket {
    /// Resolves once the item is admitted (`true`), or once it never will be (`false`:
    /// the line was closed or dropped first).
    pub async fn admitted(mut self) -> bool {
        let number = self.number;
        match self
            .progress
            .wait_for(|p| p.admitted >= number || p.closed)
            .await
        {
            Ok(progress) => progress.admitted >= number,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn tickets_resolve_in_order_as_items_are_admitted() {
        let mut line = WaitingLine::new();
        let (first, second, third) = (line.join(), line.join(), line.join());
        let mut second = Box::pin(second.admitted());
        assert!(
            second.as_mut().now_or_never().is_none(),
            "nothing admitted yet"
        );
        line.admit(2);
        assert!(first.admitted().await);
        assert!(second.await);
        let mut third = Box::pin(third.admitted());
        assert!(third.as_mut().now_or_never().is_none(), "only two admitted");
        line.admit(1);
        assert!(third.await);
    }

    #[tokio::test]
    async fn closing_or_dropping_the_line_refuses_the_items_waiting() {
        let mut line = WaitingLine::new();
        let (admitted, refused) = (line.join(), line.join());
        line.admit(1);
        line.close();
        assert!(admitted.admitted().await, "admitted before the line closed");
        assert!(!refused.admitted().await);
        assert!(!line.join().admitted().await, "joined after it closed");

        let mut dropped = WaitingLine::new();
        let ticket = dropped.join();
        drop(dropped);
        assert!(!ticket.admitted().await);
    }
}
