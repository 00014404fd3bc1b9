//! [`OrderedWriter`]: a stream's outgoing bytes, appended in order and handed to QUIC by
//! whoever appends them when no write is under way, else by the stream's writer task.
//!
//! Why inline: handing a call (or a reply) on an idle stream to a task costs a thread
//! wake-up (about 55 µs on a VM whose other vCPU sleeps). A caller that finds the stream
//! idle writes its bytes into QUIC's send buffer itself, which takes no wait: the write is
//! polled once, and whatever QUIC cannot take at once (its flow-control window is full)
//! is left to the writer task. Order holds (rule O1) because every frame is appended
//! under one lock, and whoever writes takes the bytes in the order they were appended.
//! Route streams (calls out) and served streams (replies back) both write through it.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::lock;

/// How much buffer a writer reserves at a time for the frames it appends.
const BUFFER_STEP: usize = 16 * 1024;

/// State kept with a stream's bytes that may hold frames back (a route's calls past its
/// credit): the stream is not finished while it does, so that they are still written.
pub(crate) trait HoldsBack {
    /// True while frames wait to be appended later.
    fn holds_back(&self) -> bool;
}

impl HoldsBack for () {
    fn holds_back(&self) -> bool {
        false
    }
}

/// The ordered outgoing bytes of one stream, with `E`, state the stream's frames need
/// (a route's method table, say), kept under the same lock.
pub(crate) struct OrderedWriter<E> {
    inner: Mutex<Inner<E>>,
    /// Wakes the writer task when the bytes become its job.
    wake: Notify,
}

/// The writer's state, under its lock.
pub(crate) struct Inner<E> {
    /// Frames not handed to QUIC yet, in order.
    buf: BytesMut,
    /// Bytes an inline write could not hand over; they go before `buf`.
    carry: Option<Bytes>,
    /// The stream, while nobody writes to it; `None` until the stream is open and while
    /// the writer task writes.
    send: Option<quinn::SendStream>,
    /// True while the writer task owns the writing (before the stream is open, or when
    /// QUIC was full): whoever appends leaves the bytes to it.
    task_writes: bool,
    /// Nothing more is written: the stream failed, or it was finished.
    closed: bool,
    /// Finish the stream once `buf` is written.
    finishing: bool,
    /// The stream's own state.
    pub(crate) extra: E,
}

/// The writer, locked for appending: frames go into [`Appender::parts`]; dropping it
/// writes them (inline when the stream is idle).
pub(crate) struct Appender<'a, E: HoldsBack> {
    writer: &'a OrderedWriter<E>,
    guard: MutexGuard<'a, Inner<E>>,
    /// Leave the bytes to the writer task even if the stream is idle.
    batch: bool,
}

impl<E: HoldsBack> Appender<'_, E> {
    /// Leaves the bytes to the writer task instead of writing them inline: under load
    /// (frames already in flight), one write of many frames costs less than a write per
    /// frame, and the task's wake-up is paid once for the batch.
    pub(crate) fn batch(&mut self) {
        self.batch = true;
    }

    /// Where frames go, with room reserved for `bytes` more, and the stream's own state.
    pub(crate) fn parts(&mut self, bytes: usize) -> (&mut BytesMut, &mut E) {
        let inner = &mut *self.guard;
        if inner.buf.capacity() - inner.buf.len() < bytes {
            inner.buf.reserve(bytes.max(BUFFER_STEP));
        }
        (&mut inner.buf, &mut inner.extra)
    }
}

impl<E: HoldsBack> Drop for Appender<'_, E> {
    fn drop(&mut self) {
        let inner = &mut *self.guard;
        let mut wake = match self.batch {
            true => {
                let hand_over = !inner.task_writes && inner.send.is_some() && !inner.buf.is_empty();
                if hand_over {
                    inner.task_writes = true;
                }
                hand_over
            }
            false => write_inline(inner),
        };
        // The last frames held back went out after the stream was to be finished: the
        // writer task finishes it now.
        if inner.finishing && !inner.task_writes && !inner.extra.holds_back() {
            inner.task_writes = true;
            wake = true;
        }
        if wake {
            self.writer.wake.notify_one();
        }
    }
}

/// Hands the bytes to QUIC now when nobody else writes; otherwise leaves them to the
/// writer task, which takes them after what it is writing. True when the task must be
/// woken to write what QUIC could not take.
fn write_inline<E>(inner: &mut Inner<E>) -> bool {
    if inner.task_writes || inner.buf.is_empty() {
        return false;
    }
    let Some(send) = inner.send.as_mut() else {
        return false;
    };
    let mut chunks = [inner.buf.split().freeze()];
    let written = poll_once(send.write_chunks(&mut chunks));
    let [rest] = chunks;
    match written {
        Some(Ok(_)) if rest.is_empty() => false,
        // QUIC took part (its window is full), or failed: the writer task writes the
        // rest, or meets the error and reports it.
        _ => {
            inner.carry = Some(rest);
            inner.task_writes = true;
            true
        }
    }
}

/// What the writer task does next.
enum Step {
    /// Write these bytes.
    Write(quinn::SendStream, Vec<Bytes>),
    /// The stream is finished.
    Finished(quinn::SendStream),
    /// Nothing to write: whoever appends next writes inline.
    Idle,
}

/// Polls `future` once, without waiting: `None` if it is not ready.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

impl<E: HoldsBack> OrderedWriter<E> {
    /// A writer whose first bytes are `first` (the frame that opens the stream, say); the
    /// stream comes later, with [`OrderedWriter::write_until_finished`].
    pub(crate) fn new(first: BytesMut, extra: E) -> Self {
        OrderedWriter {
            inner: Mutex::new(Inner {
                buf: first,
                carry: None,
                send: None,
                task_writes: true,
                closed: false,
                finishing: false,
                extra,
            }),
            wake: Notify::new(),
        }
    }

    /// Locks the writer for appending frames; `None` once nothing more is written. (A
    /// stream to be finished still takes the frames its state held back.)
    pub(crate) fn append(&self) -> Option<Appender<'_, E>> {
        let guard = lock(&self.inner);
        if guard.closed {
            return None;
        }
        Some(Appender {
            writer: self,
            guard,
            batch: false,
        })
    }

    /// Finishes the stream once the bytes appended so far, and those its state holds
    /// back, are written.
    pub(crate) fn finish(&self) {
        let mut inner = lock(&self.inner);
        inner.finishing = true;
        if !inner.task_writes {
            inner.task_writes = true;
            drop(inner);
            self.wake.notify_one();
        }
    }

    /// Nothing more is taken: the stream could not be opened or written.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
    }

    /// The writer task's side, once the stream is open: writes whatever could not be
    /// written inline, and finishes the stream when asked to. Returns the finished stream
    /// (to wait until the peer has read it), or why writing failed.
    pub(crate) async fn write_until_finished(
        &self,
        mut send: quinn::SendStream,
    ) -> Result<quinn::SendStream, quinn::WriteError> {
        loop {
            let mut chunks = match self.next_step(send) {
                Step::Write(stream, chunks) => {
                    send = stream;
                    chunks
                }
                Step::Finished(stream) => return Ok(stream),
                Step::Idle => {
                    send = self.idle().await;
                    continue;
                }
            };
            let written = send.write_all_chunks(&mut chunks).await;
            if let Err(error) = written {
                self.close();
                return Err(error);
            }
        }
    }

    /// What the writer task does next, decided under the lock: write the bytes waiting,
    /// finish the stream, or hand the stream to whoever appends next.
    fn next_step(&self, mut send: quinn::SendStream) -> Step {
        let mut inner = lock(&self.inner);
        if inner.carry.is_some() || !inner.buf.is_empty() {
            let mut chunks = Vec::with_capacity(2);
            chunks.extend(inner.carry.take());
            chunks.push(inner.buf.split().freeze());
            return Step::Write(send, chunks);
        }
        if inner.finishing && !inner.extra.holds_back() {
            inner.closed = true;
            let _ = send.finish();
            return Step::Finished(send);
        }
        inner.task_writes = false;
        inner.send = Some(send);
        Step::Idle
    }

    /// Waits until the writing is the task's job again, and takes the stream back.
    async fn idle(&self) -> quinn::SendStream {
        loop {
            self.wake.notified().await;
            let mut inner = lock(&self.inner);
            if inner.task_writes
                && let Some(send) = inner.send.take()
            {
                return send;
            }
        }
    }
}
