//! The way back: how an actor's answer reaches the caller.
//!
//! A [`Reply<T>`] travels inside each message. For a caller in the same process it
//! is a typed one-shot channel (no encoding at all); for a caller that sent encoded
//! bytes (a remote driver, a loopback handle, a group broadcast) it encodes the
//! `Result<T, Error>` as a reply ([`codec::with_encoded_reply`]) and hands the bytes to a
//! [`ReplySink`], which the transport implements. Either way the actor's code is the
//! same.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::codec;
use crate::codec::attachments::Attachment;
use crate::error::{Error, Result};

/// Where an encoded reply goes when it is not a channel back to a caller in this
/// process: a transport's stream, say.
pub trait ReplySink: Send + 'static {
    /// Delivers an encoded reply ([`codec::with_encoded_reply`]).
    fn deliver(self: Box<Self>, encoded: Bytes);

    /// Delivers an encoded reply that is only borrowed: a sink that copies it somewhere
    /// anyway (a stream's buffer) overrides this to skip the copy into `Bytes`.
    fn deliver_slice(self: Box<Self>, encoded: &[u8]) {
        self.deliver(Bytes::copy_from_slice(encoded));
    }
}

/// A sink that many calls share (a transport's stream, say), told which call each
/// reply answers: a call answered through it needs no allocation of its own, where a
/// [`ReplySink`] is one box per call.
pub trait SharedReplySink: Send + Sync + 'static {
    /// Delivers the encoded reply of call `call`.
    fn deliver(&self, call: u64, encoded: Bytes);

    /// Delivers a borrowed encoded reply (see [`ReplySink::deliver_slice`]).
    fn deliver_slice(&self, call: u64, encoded: &[u8]) {
        self.deliver(call, Bytes::copy_from_slice(encoded));
    }

    /// The reply slot of call `call` was dropped unanswered (its actor is gone).
    fn abandoned(&self, call: u64) {
        let _ = call;
    }

    /// Whether replies through this sink may come with attachments
    /// ([`codec::attachments`]): the transport hands large buffers to the caller beside
    /// the reply's bytes (shared memory to a caller on its host, say). Default: no.
    fn attaches(&self) -> bool {
        false
    }

    /// Delivers an encoded reply and the attachments its bytes refer to (called when
    /// [`attaches`](Self::attaches) says yes, with at least one attachment). Default: the
    /// reply with its attachments inline.
    fn deliver_attached(&self, call: u64, encoded: &[u8], attachments: Vec<Attachment>) {
        self.deliver(
            call,
            codec::inline_attachments(encoded, &Arc::from(attachments)),
        );
    }
}

/// The reply slot of one call answered through a [`SharedReplySink`].
pub struct SharedReply {
    /// `None` once answered.
    sink: Option<Arc<dyn SharedReplySink>>,
    call: u64,
}

impl SharedReply {
    fn deliver_with(mut self, deliver: impl FnOnce(&dyn SharedReplySink, u64)) {
        if let Some(sink) = self.sink.take() {
            deliver(&*sink, self.call);
        }
    }
}

impl Drop for SharedReply {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.abandoned(self.call);
        }
    }
}

/// An encoded reply ([`codec::with_encoded_reply`]) that a route keeps until its caller
/// collects it ([`EncodedRoute::poll_kept`](crate::backend::EncodedRoute::poll_kept)):
/// a small one is copied inline (no allocation, and no reference count shared between
/// the thread that read it and the caller's), a larger one shares the bytes it came in.
#[derive(Clone)]
pub enum KeptReply {
    /// A reply of at most [`KeptReply::INLINE`] bytes, the first `len` of `bytes`.
    Inline {
        /// How many of `bytes` the reply uses.
        len: u8,
        /// The reply, then unused bytes.
        bytes: [u8; KeptReply::INLINE],
    },
    /// A larger reply.
    Shared(Bytes),
    /// A reply with attachments ([`codec::attachments`]) that came beside it.
    Attached {
        /// The encoded reply.
        encoded: Bytes,
        /// What it refers to.
        attachments: Arc<[Attachment]>,
    },
}

impl KeptReply {
    /// The longest reply kept inline.
    pub const INLINE: usize = 30;

    /// Copies `encoded` inline when it is small, or into bytes of its own.
    pub fn copy_from(encoded: &[u8]) -> Self {
        match Self::inline(encoded) {
            Some(kept) => kept,
            None => KeptReply::Shared(Bytes::copy_from_slice(encoded)),
        }
    }

    /// Keeps `encoded` inline when it is small, or as it is.
    pub fn from_bytes(encoded: Bytes) -> Self {
        Self::inline(&encoded).unwrap_or(KeptReply::Shared(encoded))
    }

    fn inline(encoded: &[u8]) -> Option<Self> {
        let mut bytes = [0; KeptReply::INLINE];
        bytes.get_mut(..encoded.len())?.copy_from_slice(encoded);
        Some(KeptReply::Inline {
            len: encoded.len() as u8,
            bytes,
        })
    }

    /// The encoded reply.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KeptReply::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeptReply::Shared(bytes) | KeptReply::Attached { encoded: bytes, .. } => bytes,
        }
    }

    /// Decodes the reply: its bulk buffers become views of its bytes or of its
    /// attachments, not copies.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: impl std::fmt::Display,
    ) -> Result<T> {
        match self {
            KeptReply::Inline { .. } => codec::decode_reply(self.as_slice(), what),
            KeptReply::Shared(bytes) => codec::decode_reply_of(bytes, None, what),
            KeptReply::Attached {
                encoded,
                attachments,
            } => codec::decode_reply_of(encoded, Some(attachments), what),
        }
    }
}

impl PartialEq for KeptReply {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::fmt::Debug for KeptReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeptReply({} bytes)", self.as_slice().len())
    }
}

/// The reply slot of one encoded call: answer it once, with a value or an error.
///
/// The common case, a caller waiting in this process, is a plain one-shot channel (no
/// box); transports that write the answer somewhere else supply a [`ReplySink`] or a
/// [`SharedReplySink`].
pub enum EncodedReply {
    /// The bytes go to a caller waiting on the other end of the channel.
    Channel(oneshot::Sender<Bytes>),
    /// The bytes go to a sink (a transport's stream).
    Sink(Box<dyn ReplySink>),
    /// The bytes go to a sink shared with other calls.
    Shared(SharedReply),
}

impl EncodedReply {
    /// Wraps a sink.
    pub fn new(sink: impl ReplySink) -> Self {
        EncodedReply::Sink(Box::new(sink))
    }

    /// The reply slot of call `call`, answered through `sink`.
    pub fn shared(sink: Arc<dyn SharedReplySink>, call: u64) -> Self {
        EncodedReply::Shared(SharedReply {
            sink: Some(sink),
            call,
        })
    }

    /// A reply slot whose bytes arrive on the returned receiver.
    pub fn channel() -> (Self, oneshot::Receiver<Bytes>) {
        let (tx, rx) = oneshot::channel();
        (EncodedReply::Channel(tx), rx)
    }

    /// Answers with an error without running anything (unknown method, bad arguments, dead actor).
    pub fn fail(self, error: Error) {
        self.deliver(codec::encode_error(&error));
    }

    /// Answers with an already encoded reply.
    pub fn deliver(self, encoded: Bytes) {
        match self {
            // The caller may have dropped its `Call`; the call still ran, nobody waits.
            EncodedReply::Channel(tx) => {
                let _ = tx.send(encoded);
            }
            EncodedReply::Sink(sink) => sink.deliver(encoded),
            EncodedReply::Shared(reply) => {
                reply.deliver_with(|sink, call| sink.deliver(call, encoded));
            }
        }
    }

    /// Answers with a reply a route read (shared bytes go on as they are).
    pub fn deliver_kept(self, kept: KeptReply) {
        match kept {
            KeptReply::Shared(bytes) => self.deliver(bytes),
            KeptReply::Attached {
                encoded,
                attachments,
            } if self.attaches() => self.deliver_attached(&encoded, attachments.to_vec()),
            // A receiver that takes no attachments gets the reply with them inline.
            KeptReply::Attached {
                encoded,
                attachments,
            } => self.deliver(codec::inline_attachments(&encoded, &attachments)),
            inline => self.deliver_slice(inline.as_slice()),
        }
    }

    /// Whether the reply may come with attachments (see [`SharedReplySink::attaches`]).
    pub fn attaches(&self) -> bool {
        match self {
            EncodedReply::Shared(reply) => reply.sink.as_ref().is_some_and(|sink| sink.attaches()),
            EncodedReply::Channel(_) | EncodedReply::Sink(_) => false,
        }
    }

    /// Answers with an encoded reply and its attachments; only for a reply that
    /// [`attaches`](Self::attaches).
    pub fn deliver_attached(self, encoded: &[u8], attachments: Vec<Attachment>) {
        match self {
            EncodedReply::Shared(reply) => {
                reply.deliver_with(|sink, call| sink.deliver_attached(call, encoded, attachments))
            }
            other => other.deliver(codec::inline_attachments(encoded, &Arc::from(attachments))),
        }
    }

    /// Answers with an encoded reply that is only borrowed (see
    /// [`ReplySink::deliver_slice`]).
    pub fn deliver_slice(self, encoded: &[u8]) {
        match self {
            EncodedReply::Channel(tx) => {
                let _ = tx.send(Bytes::copy_from_slice(encoded));
            }
            EncodedReply::Sink(sink) => sink.deliver_slice(encoded),
            EncodedReply::Shared(reply) => {
                reply.deliver_with(|sink, call| sink.deliver_slice(call, encoded));
            }
        }
    }
}

impl std::fmt::Debug for EncodedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodedReply::Channel(_) => "EncodedReply::Channel",
            EncodedReply::Sink(_) => "EncodedReply::Sink",
            EncodedReply::Shared(_) => "EncodedReply::Shared",
        })
    }
}

/// The reply slot carried by one message: answer it once with the method's result.
pub struct Reply<T> {
    inner: ReplyInner<T>,
}

enum ReplyInner<T> {
    Local(oneshot::Sender<Result<T>>),
    Encoded(EncodedReply, Option<EncodeReply<T>>),
}

/// Encodes a method's result into a reply slot, when not as a plain `T` (see
/// [`Reply::encoded_with`]).
pub type EncodeReply<T> = fn(&Result<T>, EncodedReply);

/// Encodes `result` (a view of a method's result that encodes as the caller decodes it)
/// into `reply`, with its large blobs beside it when the slot takes attachments.
pub fn encode_reply_as<W: Serialize>(result: std::result::Result<W, &Error>, reply: EncodedReply) {
    let attaching = reply.attaches();
    codec::with_encoded_reply_as(result, attaching, |bytes, attachments| {
        match attachments.is_empty() {
            true => reply.deliver_slice(bytes),
            false => reply.deliver_attached(bytes, attachments),
        }
    })
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            ReplyInner::Local(_) => "Reply::Local",
            ReplyInner::Encoded(..) => "Reply::Encoded",
        })
    }
}

impl<T: Serialize + Send + 'static> Reply<T> {
    /// A typed reply slot for a caller in this process, and the receiver it waits on.
    pub(crate) fn local() -> (Self, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply {
                inner: ReplyInner::Local(tx),
            },
            rx,
        )
    }

    /// A reply slot that encodes the answer for a caller that sent bytes.
    pub fn encoded(reply: EncodedReply) -> Self {
        Reply {
            inner: ReplyInner::Encoded(reply, None),
        }
    }

    /// A reply slot that encodes the answer with `encode` rather than as a plain `T`:
    /// the code `#[kt::actor]` generates for a method whose reply travels in another form.
    #[doc(hidden)]
    pub fn encoded_with(reply: EncodedReply, encode: EncodeReply<T>) -> Self {
        Reply {
            inner: ReplyInner::Encoded(reply, Some(encode)),
        }
    }

    /// Sends the result to the caller. A caller that stopped waiting is not an error.
    pub fn send(self, result: Result<T>) {
        match self.inner {
            ReplyInner::Local(tx) => {
                let _ = tx.send(result);
            }
            ReplyInner::Encoded(reply, Some(encode)) => encode(&result, reply),
            ReplyInner::Encoded(reply, None) => encode_reply_as(result.as_ref(), reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn encoded_replies_decode_as_the_typed_result() {
        let (sink, rx) = EncodedReply::channel();
        Reply::<u64>::encoded(sink).send(Ok(42));
        let bytes = rx.await.expect("delivered");
        assert_eq!(codec::decode_reply::<u64>(&bytes, "reply"), Ok(42));
    }

    #[derive(Default)]
    struct Recorder {
        delivered: std::sync::Mutex<Vec<(u64, Vec<u8>)>>,
        abandoned: std::sync::Mutex<Vec<u64>>,
    }

    impl SharedReplySink for Recorder {
        fn deliver(&self, call: u64, encoded: Bytes) {
            self.delivered
                .lock()
                .unwrap()
                .push((call, encoded.to_vec()));
        }

        fn abandoned(&self, call: u64) {
            self.abandoned.lock().unwrap().push(call);
        }
    }

    #[test]
    fn a_shared_sink_hears_each_call_once_answered_or_abandoned() {
        let sink = Arc::new(Recorder::default());
        Reply::<u64>::encoded(EncodedReply::shared(sink.clone(), 1)).send(Ok(5));
        EncodedReply::shared(sink.clone(), 2).fail(Error::NoRuntime);
        drop(EncodedReply::shared(sink.clone(), 3));
        let delivered = sink.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 2);
        assert_eq!(codec::decode_reply::<u64>(&delivered[0].1, "r"), Ok(5));
        assert_eq!(delivered[1].0, 2);
        assert_eq!(*sink.abandoned.lock().unwrap(), vec![3]);
    }

    #[test]
    fn kept_replies_hold_small_ones_inline_and_share_larger_ones() {
        let small = KeptReply::copy_from(&[1, 2, 3]);
        assert!(matches!(small, KeptReply::Inline { len: 3, .. }));
        assert_eq!(small.as_slice(), &[1, 2, 3]);
        let edge = vec![9u8; KeptReply::INLINE];
        assert!(matches!(
            KeptReply::copy_from(&edge),
            KeptReply::Inline { .. }
        ));
        let large = Bytes::from(vec![7u8; KeptReply::INLINE + 1]);
        let kept = KeptReply::from_bytes(large.clone());
        assert!(matches!(&kept, KeptReply::Shared(b) if b.as_ptr() == large.as_ptr()));
        assert_eq!(kept.as_slice(), &large[..]);
        assert_eq!(KeptReply::copy_from(&[]).as_slice(), &[] as &[u8]);
    }

    #[tokio::test]
    async fn a_kept_reply_delivered_to_a_slot_arrives_whole() {
        for len in [4, 100] {
            let (sink, rx) = EncodedReply::channel();
            sink.deliver_kept(KeptReply::copy_from(&vec![5u8; len]));
            assert_eq!(rx.await.expect("delivered")[..], vec![5u8; len][..]);
        }
    }

    #[tokio::test]
    async fn failures_decode_as_errors_of_any_reply_type() {
        let (sink, rx) = EncodedReply::channel();
        sink.fail(Error::NoRuntime);
        let bytes = rx.await.expect("delivered");
        let back = codec::decode_reply::<Vec<String>>(&bytes, "reply");
        assert_eq!(back, Err(Error::NoRuntime));
    }
}
