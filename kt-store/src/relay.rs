//! Copies in flight, served on as they arrive: a getter that the directory made a relay of
//! a fan-out forwards each chunk to the getters below it as soon as that chunk passed its
//! digest, so a version reaches many getters in a pipelined tree rather than one getter
//! after another (or all of them from its first holder).
//!
//! The copy's memfd is read through a read-only view of its own (the writer keeps its
//! writable mapping); only verified chunks are handed out, and the view stays valid
//! after the copy is sealed.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kt_core::Error;
use kt_transport::node::bulk::{CHUNK_BYTES, GrowingSource};
use kt_transport::wire::sealed_memory::ReadView;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// How long a relay waits for its own copy to start (or to be held) when a getter below
/// it asks first (both learned of the fan-out from the same answer of the directory).
pub(crate) const START_WITHIN: Duration = Duration::from_secs(5);

/// One copy in flight.
pub(crate) struct Growing {
    view: Arc<ReadView>,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// Which chunks passed their digests.
    verified: Vec<bool>,
    /// Set when this copy will not be finished.
    failed: Option<Error>,
}

impl Growing {
    /// A copy whose pages `view` reads.
    pub(crate) fn new(view: ReadView) -> Arc<Growing> {
        let chunks = view.len().div_ceil(CHUNK_BYTES as usize);
        Arc::new(Growing {
            view: Arc::new(view),
            state: Mutex::new(State {
                verified: vec![false; chunks],
                failed: None,
            }),
            changed: Notify::new(),
        })
    }

    /// The copy's whole size.
    fn size(&self) -> u64 {
        self.view.len() as u64
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The chunk starting at `range.start` passed its digest.
    pub(crate) fn verified(&self, range: Range<u64>) {
        let index = (range.start / u64::from(CHUNK_BYTES)) as usize;
        if let Some(chunk) = self.state().verified.get_mut(index) {
            *chunk = true;
        }
        self.changed.notify_waiters();
    }

    /// This copy will not be finished: the getters waiting on it go elsewhere.
    pub(crate) fn fail(&self, error: Error) {
        self.state().failed.get_or_insert(error);
        self.changed.notify_waiters();
    }

    /// True once chunk `index` is verified; the error once the copy failed.
    fn ready(&self, index: usize) -> Result<bool, Error> {
        let state = self.state();
        match (&state.failed, state.verified.get(index)) {
            (_, Some(true)) => Ok(true),
            (Some(error), _) => Err(error.clone()),
            (None, Some(false)) => Ok(false),
            (None, None) => Err(Error::Protocol {
                message: format!(
                    "chunk {index} is past the end of a {}-byte copy",
                    self.size()
                ),
            }),
        }
    }
}

/// A [`Growing`] behind its `Arc`, as the node serves it.
pub(crate) struct SharedGrowing(pub(crate) Arc<Growing>);

impl GrowingSource for SharedGrowing {
    fn size(&self) -> u64 {
        self.0.size()
    }

    fn chunk(&self, range: Range<u64>) -> BoxFuture<'static, Result<Bytes, Error>> {
        let growing = self.0.clone();
        Box::pin(async move {
            let index = (range.start / u64::from(CHUNK_BYTES)) as usize;
            loop {
                // Registered before the check: a chunk verified in between still wakes it.
                let changed = growing.changed.notified();
                if growing.ready(index)? {
                    let end = range.end.min(growing.size());
                    return Ok(growing.view.slice(range.start as usize..end as usize));
                }
                changed.await;
            }
        })
    }
}

/// The copies this process is receiving, by key and version.
#[derive(Default)]
pub(crate) struct Relaying {
    copies: Mutex<HashMap<(String, u64), Arc<Growing>>>,
    changed: Notify,
}

impl Relaying {
    fn copies(&self) -> MutexGuard<'_, HashMap<(String, u64), Arc<Growing>>> {
        self.copies
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A copy of `key` `version` starts.
    pub(crate) fn start(&self, key: &str, version: u64, growing: Arc<Growing>) {
        self.copies().insert((key.to_string(), version), growing);
        self.changed.notify_waiters();
    }

    /// The copy of `key` `version` is over: kept (the holdings serve it now) or failed.
    pub(crate) fn end(&self, key: &str, version: u64) {
        self.copies().remove(&(key.to_string(), version));
        self.changed.notify_waiters();
    }

    /// The copy of `key` `version` in flight here, if any.
    pub(crate) fn find(&self, key: &str, version: u64) -> Option<Arc<Growing>> {
        self.copies().get(&(key.to_string(), version)).cloned()
    }

    /// Resolves at the next [`start`](Self::start) or [`end`](Self::end) of any copy; it
    /// hears of those from the moment it is made, before it is polled (so: make it, look,
    /// then await it).
    pub(crate) fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_transport::wire::sealed_memory::SealedMemory;

    const CHUNK: u64 = CHUNK_BYTES as u64;

    #[tokio::test]
    async fn a_chunk_is_served_once_verified_and_a_failed_copy_fails_its_waiters() {
        let mut memory = SealedMemory::writable(2 * CHUNK as usize + 5).unwrap();
        let growing = Growing::new(memory.reader().unwrap());
        let shared = SharedGrowing(growing.clone());
        let second = tokio::spawn(shared.chunk(CHUNK..2 * CHUNK));
        memory.as_mut_slice()[CHUNK as usize] = 9;
        growing.verified(CHUNK..2 * CHUNK);
        let chunk = second.await.unwrap().unwrap();
        assert_eq!((chunk.len() as u64, chunk[0]), (CHUNK, 9));
        // The last, short chunk: never verified, the copy fails.
        let last = tokio::spawn(shared.chunk(2 * CHUNK..3 * CHUNK));
        growing.fail(Error::KeyNotFound { key: "w".into() });
        assert!(matches!(
            last.await.unwrap(),
            Err(Error::KeyNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_copy_starting_or_ending_wakes_whoever_looked_before() {
        let relaying = Relaying::default();
        assert!(relaying.find("w", 1).is_none());
        let changed = relaying.changed();
        let memory = SealedMemory::writable(10).unwrap();
        relaying.start("w", 1, Growing::new(memory.reader().unwrap()));
        changed.await;
        assert!(relaying.find("w", 1).is_some());
        let changed = relaying.changed();
        relaying.end("w", 1);
        changed.await;
        assert!(relaying.find("w", 1).is_none());
    }
}
