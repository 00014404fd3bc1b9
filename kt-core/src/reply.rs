//! The way back: how an actor's answer reaches the caller.
//!
//! A [`Reply<T>`] travels inside each message. For a caller in the same process it
//! is a typed one-shot channel (no encoding at all); for a caller that sent encoded
//! bytes (a remote driver, a loopback handle, a group broadcast) it encodes
//! `Result<T, Error>` with MessagePack and hands the bytes to a [`ReplySink`], which
//! the transport implements. Either way the actor's code is the same.

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::codec;
use crate::error::{Error, Result};

/// Where an encoded reply goes when it is not a channel back to a caller in this
/// process: a transport's stream, say.
pub trait ReplySink: Send + 'static {
    /// Delivers the MessagePack encoding of a `Result<T, Error>`.
    fn deliver(self: Box<Self>, encoded: Bytes);
}

/// The reply slot of one encoded call: answer it once, with a value or an error.
///
/// The common case, a caller waiting in this process, is a plain one-shot channel (no
/// box); transports that write the answer somewhere else supply a [`ReplySink`].
pub enum EncodedReply {
    /// The bytes go to a caller waiting on the other end of the channel.
    Channel(oneshot::Sender<Bytes>),
    /// The bytes go to a sink (a transport's stream).
    Sink(Box<dyn ReplySink>),
}

impl EncodedReply {
    /// Wraps a sink.
    pub fn new(sink: impl ReplySink) -> Self {
        EncodedReply::Sink(Box::new(sink))
    }

    /// A reply slot whose bytes arrive on the returned receiver.
    pub fn channel() -> (Self, oneshot::Receiver<Bytes>) {
        let (tx, rx) = oneshot::channel();
        (EncodedReply::Channel(tx), rx)
    }

    /// Answers with an error without running anything (unknown method, bad arguments, dead actor).
    pub fn fail(self, error: Error) {
        self.deliver(encode_error(&error));
    }

    /// Answers with an already encoded `Result<T, Error>`.
    pub fn deliver(self, encoded: Bytes) {
        match self {
            // The caller may have dropped its `Call`; the call still ran, nobody waits.
            EncodedReply::Channel(tx) => {
                let _ = tx.send(encoded);
            }
            EncodedReply::Sink(sink) => sink.deliver(encoded),
        }
    }
}

impl std::fmt::Debug for EncodedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodedReply::Channel(_) => "EncodedReply::Channel",
            EncodedReply::Sink(_) => "EncodedReply::Sink",
        })
    }
}

/// Encodes `Err(error)` as any `Result<T, Error>` would encode it (the encoding of the
/// `Err` variant does not depend on `T`).
pub fn encode_error(error: &Error) -> Bytes {
    let err: std::result::Result<(), &Error> = Err(error);
    // Error contains only strings and integers; encoding it cannot fail. If it ever did,
    // the empty payload decodes as a clear `Error::Decode` at the caller.
    codec::encode_bytes(&err, "an error reply").unwrap_or_default()
}

/// The reply slot carried by one message: answer it once with the method's result.
pub struct Reply<T> {
    inner: ReplyInner<T>,
}

enum ReplyInner<T> {
    Local(oneshot::Sender<Result<T>>),
    Encoded(EncodedReply),
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            ReplyInner::Local(_) => "Reply::Local",
            ReplyInner::Encoded(_) => "Reply::Encoded",
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
            inner: ReplyInner::Encoded(reply),
        }
    }

    /// Sends the result to the caller. A caller that stopped waiting is not an error.
    pub fn send(self, result: Result<T>) {
        match self.inner {
            ReplyInner::Local(tx) => {
                let _ = tx.send(result);
            }
            ReplyInner::Encoded(reply) => match codec::encode_bytes(&result, "a reply") {
                Ok(bytes) => reply.deliver(bytes),
                Err(error) => reply.fail(error),
            },
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
        let back: Result<u64> = codec::decode(&bytes, "reply").expect("decode");
        assert_eq!(back, Ok(42));
    }

    #[tokio::test]
    async fn failures_decode_as_errors_of_any_reply_type() {
        let (sink, rx) = EncodedReply::channel();
        sink.fail(Error::NoRuntime);
        let bytes = rx.await.expect("delivered");
        let back: Result<Vec<String>> = codec::decode(&bytes, "reply").expect("decode");
        assert_eq!(back, Err(Error::NoRuntime));
    }
}
