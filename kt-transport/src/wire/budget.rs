//! A bound on the memory one connection's unfinished frames may hold.
//!
//! A frame's buffer grows only as its bytes arrive ([`super::frame::FrameCodec`]), but a
//! peer that really sends part of a large frame on each of thousands of streams would
//! still make the receiver hold all those parts. So every frame that has to wait for
//! more bytes is first *admitted* against its connection's [`ConnectionBudget`] for its
//! whole announced length; one that does not fit waits, unread — QUIC's flow control then
//! holds its sender back — until earlier frames complete and give their share back. An
//! admitted frame can always complete, so waiting never deadlocks, and what one
//! connection holds in unfinished frames stays under its budget (plus what QUIC buffers
//! per stream, which its receive windows bound).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use super::frame::{FRAME_OVERHEAD, max_message_bytes};

/// The default budget of one connection: 1 GiB (override with `KT_MAX_CONNECTION_BYTES`;
/// never less than one largest frame).
pub const DEFAULT_CONNECTION_BYTES: usize = 1 << 30;

/// What one connection's unfinished frames may hold, in bytes.
pub fn connection_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let configured = std::env::var("KT_MAX_CONNECTION_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CONNECTION_BYTES);
        // A budget below one frame would leave that frame waiting forever.
        configured.max(max_message_bytes() + FRAME_OVERHEAD + 4)
    })
}

/// Frames of this process held back by their connection's budget now.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// How many frames in this process wait, unread, for their connection's budget now: a
/// gauge for operators (a peer sending more large messages at once than its budget
/// admits) and for tests.
pub fn frames_waiting() -> usize {
    WAITING.load(Ordering::Relaxed)
}

/// The bytes one connection's unfinished frames may hold; shared by its streams.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    semaphore: Arc<Semaphore>,
}

impl ConnectionBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> ConnectionBudget {
        ConnectionBudget {
            semaphore: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes not held by any admitted frame now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// `reader` with its frames admitted against this budget, and the admission its
    /// frame decoder reports to ([`super::frame::FrameCodec::admitted_by`]).
    pub fn reader<R>(&self, reader: R) -> (Budgeted<R>, Arc<Admission>) {
        let admission = Arc::new(Admission::default());
        let budgeted = Budgeted {
            inner: reader,
            gate: Some((
                PollSemaphore::new(self.semaphore.clone()),
                admission.clone(),
            )),
        };
        (budgeted, admission)
    }

    /// Waits until `bytes` fit, and holds them until the permit is dropped: for a
    /// payload read outside a frame decoder (a reply on a stream of its own).
    pub async fn admit(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.semaphore.clone().acquire_many_owned(bytes).await.ok()
    }
}

/// One stream's frame in waiting: what its decoder asks for, and the share it was given.
#[derive(Debug, Default)]
pub struct Admission {
    /// Whether a frame wants or holds a share: the common case — small frames that
    /// arrive whole — then costs one atomic load per frame, no lock.
    engaged: AtomicBool,
    state: Mutex<AdmissionState>,
}

#[derive(Debug, Default)]
struct AdmissionState {
    /// Bytes the current frame needs admitted before more of it is read.
    wanted: Option<u32>,
    /// The current frame's share of the budget, once admitted.
    held: Option<OwnedSemaphorePermit>,
}

impl Admission {
    fn state(&self) -> std::sync::MutexGuard<'_, AdmissionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The frame being decoded is `bytes` long and needs more bytes than have arrived.
    pub fn want(&self, bytes: usize) {
        if self.engaged.load(Ordering::Acquire) {
            return;
        }
        // Frames are at most the message limit (checked before this), far below 4 GiB.
        self.state().wanted = Some(u32::try_from(bytes).unwrap_or(u32::MAX));
        self.engaged.store(true, Ordering::Release);
        WAITING.fetch_add(1, Ordering::Relaxed);
    }

    /// The frame being decoded is complete: its share goes back to the budget.
    pub fn done(&self) {
        if self.engaged.swap(false, Ordering::AcqRel) {
            let mut state = self.state();
            if state.wanted.take().is_some() {
                // Completed without waiting after all (never polled for more bytes).
                WAITING.fetch_sub(1, Ordering::Relaxed);
            }
            state.held = None;
        }
    }

    /// The frame was admitted: it holds `permit` until it completes.
    fn grant(&self, permit: OwnedSemaphorePermit) {
        let mut state = self.state();
        if state.wanted.take().is_some() {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
        state.held = Some(permit);
    }

    /// Bytes the current frame waits to have admitted, if it waits.
    fn wanted(&self) -> Option<u32> {
        if self.engaged.load(Ordering::Acquire) {
            self.state().wanted
        } else {
            None
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // A stream that ends while its frame waits stops waiting.
        if self.state().wanted.is_some() {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A reader whose frames wait for admission (see the module docs) before more of their
/// bytes are read; [`Budgeted::unbounded`] waits for nothing.
#[derive(Debug)]
pub struct Budgeted<R> {
    inner: R,
    gate: Option<(PollSemaphore, Arc<Admission>)>,
}

impl<R> Budgeted<R> {
    /// `reader` without a budget: for streams this process opened itself.
    pub fn unbounded(reader: R) -> Budgeted<R> {
        Budgeted {
            inner: reader,
            gate: None,
        }
    }

    /// The reader inside.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The reader inside, taken out.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Budgeted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((semaphore, admission)) = &mut this.gate
            && let Some(bytes) = admission.wanted()
        {
            match semaphore.poll_acquire_many(cx, bytes) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(permit)) => admission.grant(permit),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::other("the connection's budget closed")));
                }
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    use crate::wire::frame::codec;

    fn frame_of(len: usize) -> Vec<u8> {
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.resize(4 + len, 7);
        bytes
    }

    #[tokio::test]
    async fn a_frame_that_does_not_fit_waits_unread_until_another_completes() {
        let budget = ConnectionBudget::new(1000);
        let (mut a_tx, a_rx) = tokio::io::duplex(4096);
        let (mut b_tx, b_rx) = tokio::io::duplex(4096);
        let (a_reader, a_admission) = budget.reader(a_rx);
        let (b_reader, b_admission) = budget.reader(b_rx);
        let mut a = FramedRead::new(a_reader, codec(2000).admitted_by(a_admission));
        let mut b = FramedRead::new(b_reader, codec(2000).admitted_by(b_admission));

        // A's 600-byte frame arrives in part: admitted, it holds its 604 bytes of 1000.
        let whole_a = frame_of(600);
        a_tx.write_all(&whole_a[..100]).await.expect("write");
        assert!(a.next().now_or_never().is_none(), "A is incomplete");
        assert_eq!(budget.available(), 396);

        // B's frame starts too but does not fit: the rest of it stays unread.
        let whole_b = frame_of(600);
        b_tx.write_all(&whole_b[..100]).await.expect("write");
        let b_next = tokio::spawn(async move { b.next().await.map(|f| f.map(|f| f.len())) });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        b_tx.write_all(&whole_b[100..]).await.expect("write");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!b_next.is_finished(), "B waits for A's share");
        // Waiters are served in order: B has set aside the 396 left, and waits for A's.
        assert_eq!(budget.available(), 0);

        // A completes and gives its share back; B is admitted and completes.
        a_tx.write_all(&whole_a[100..]).await.expect("write");
        let a_frame = a.next().await.expect("a frame").expect("decodes");
        assert_eq!(a_frame.len(), 600);
        let b_frame = b_next
            .await
            .expect("joins")
            .expect("a frame")
            .expect("decodes");
        assert_eq!(b_frame, 600);
        assert_eq!(budget.available(), 1000, "every share went back");
    }

    #[tokio::test]
    async fn whole_frames_already_read_need_no_admission() {
        let budget = ConnectionBudget::new(10);
        let (mut tx, rx) = tokio::io::duplex(4096);
        let (reader, admission) = budget.reader(rx);
        let mut frames = FramedRead::new(reader, codec(2000).admitted_by(admission));
        tx.write_all(&[frame_of(3), frame_of(5)].concat())
            .await
            .expect("write");
        assert_eq!(
            frames.next().await.expect("frame").expect("decodes").len(),
            3
        );
        assert_eq!(
            frames.next().await.expect("frame").expect("decodes").len(),
            5
        );
        assert_eq!(budget.available(), 10);
    }
}
