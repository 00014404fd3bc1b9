//! The serving side of a stream: calls in, replies out.
//!
//! Each stream a peer opens starts with one frame that says what it is: `Open` (calls
//! for one exported actor follow) or `Hello` (a worker this driver started reports in).
//! Anything wrong with the bytes — garbage, a truncated or oversized frame, an unknown
//! actor, another protocol version — is answered with a `Refused` frame on that stream
//! and never affects other streams or the process (rule X3). Unknown methods and wrong
//! argument types are answered per call by the actor's own decoding.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use kt_core::{Accepted, EncodedReply, ErasedActor, Error, ReplySink};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::FramedRead;

use super::Node;
use super::control::{AttachStream, HelloStream};
use crate::wire::frame::{
    Frame, PROTOCOL_VERSION, codec, decode_frame, encode_frame, max_message_bytes,
};

/// Replies larger than this go on a stream of their own, so that they never hold up the
/// small replies behind them.
const OUT_OF_BAND_REPLY_BYTES: usize = 256 * 1024;

/// The frames of one incoming stream.
pub(crate) type Frames = FramedRead<quinn::RecvStream, crate::wire::frame::FrameCodec>;

/// Draining before exit: call streams stop taking calls, and the node waits until each
/// caller has read its replies.
pub(crate) struct Drain {
    /// Set when the process is about to exit: call streams stop taking calls.
    draining: watch::Sender<bool>,
    /// How many call streams are still being served.
    serving: Arc<watch::Sender<usize>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            draining: watch::channel(false).0,
            serving: Arc::new(watch::channel(0).0),
        }
    }
}

/// Counts one call stream as served until dropped.
pub(crate) struct Serving(Arc<watch::Sender<usize>>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Drain {
    /// Counts a call stream as served while the guard lives.
    fn serving(&self) -> Serving {
        self.serving.send_modify(|n| *n += 1);
        Serving(self.serving.clone())
    }

    /// Becomes true when the process is about to exit.
    fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Stops every call stream from taking calls and waits (at most `within`) until
    /// each has finished.
    pub(crate) async fn drain_within(&self, within: std::time::Duration) {
        self.draining.send_replace(true);
        let mut serving = self.serving.subscribe();
        let drained = serving.wait_for(|streams| *streams == 0);
        let _ = tokio::time::timeout(within, drained).await;
    }
}

impl Node {
    /// Accepts connections on `endpoint` and serves the streams their peers open.
    pub(super) async fn accept_loop(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                // A peer without a certificate from the session CA fails here, in the
                // handshake, before any of its bytes reach kt.
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(error) => return tracing::debug!("refused a connection: {error}"),
                };
                node.adopt(conn);
            });
        }
    }
}

/// Serves one stream a peer opened.
pub(crate) async fn serve_stream(
    node: Arc<Node>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut frames = FramedRead::new(recv, codec(max_message_bytes()));
    let first = match next_frame(&mut frames).await {
        Some(Ok(frame)) => frame,
        Some(Err(error)) => return refuse(&mut send, error).await,
        None => return,
    };
    match first {
        Frame::Open { version, actor_id } => {
            if version != PROTOCOL_VERSION {
                return refuse(&mut send, version_error(version)).await;
            }
            let Some(actor) = node.exported(actor_id) else {
                let error = Error::Unavailable {
                    target: format!("actor #{actor_id}"),
                    message: format!(
                        "node {} serves no such actor: it stopped, or never lived here",
                        node.address()
                    ),
                };
                return refuse(&mut send, error).await;
            };
            serve_calls(&node, actor, conn, send, frames).await;
        }
        Frame::Hello {
            version,
            token,
            result,
        } => {
            if version != PROTOCOL_VERSION {
                return refuse(&mut send, version_error(version)).await;
            }
            node.control().deliver_hello(
                token,
                HelloStream {
                    result,
                    control: send,
                    events: frames,
                },
            );
        }
        Frame::Attach { version, token } => {
            if version != PROTOCOL_VERSION {
                return refuse(&mut send, version_error(version)).await;
            }
            let attach = AttachStream {
                control: send,
                events: frames,
            };
            if let Some(mut attach) = node.control().deliver_attach(token, attach) {
                let error = Error::Unavailable {
                    target: format!("node {}", node.address()),
                    message: "no worker here waits for this driver (wrong token, or the \
                              worker gave up waiting)"
                        .into(),
                };
                refuse(&mut attach.control, error).await;
            }
        }
        other => {
            let error = Error::Protocol {
                message: format!("a stream cannot start with {}", frame_name(&other)),
            };
            refuse(&mut send, error).await;
        }
    }
}

fn version_error(version: u16) -> Error {
    Error::Protocol {
        message: format!(
            "peer speaks protocol version {version}, this process speaks {PROTOCOL_VERSION}"
        ),
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Open { .. } => "Open",
        Frame::Call { .. } => "Call",
        Frame::Reply { .. } => "Reply",
        Frame::Attach { .. } => "Attach",
        Frame::ReplyStream { .. } => "ReplyStream",
        Frame::Refused { .. } => "Refused",
        Frame::Release => "Release",
        Frame::Kill => "Kill",
        Frame::Gone { .. } => "Gone",
    }
}

/// The next frame of a stream: `None` at its end, an error for unreadable bytes.
pub(crate) async fn next_frame(frames: &mut Frames) -> Option<Result<Frame, Error>> {
    let body = match frames.next().await? {
        Ok(body) => body,
        Err(error) => {
            let too_long = error
                .get_ref()
                .is_some_and(|inner| inner.is::<crate::wire::frame::FrameTooLong>());
            let message = match too_long {
                true => format!(
                    "a frame is longer than the {}-byte message limit",
                    max_message_bytes()
                ),
                false => format!("unreadable frame: {error}"),
            };
            return Some(Err(Error::Protocol { message }));
        }
    };
    Some(decode_frame(&body))
}

async fn refuse(send: &mut quinn::SendStream, error: Error) {
    tracing::debug!("refusing a stream: {error}");
    let mut buf = BytesMut::new();
    if encode_frame(&Frame::Refused { error }, &mut buf).is_ok() {
        let _ = send.write_all(&buf).await;
    }
    let _ = send.finish();
}

/// What a call stream sends back.
enum Outbound {
    /// One call's encoded `Result<T, Error>`.
    Reply { call_id: u64, payload: Vec<u8> },
    /// The stream can no longer be read; pending calls fail with this error.
    Refused(Error),
}

/// Where one call's reply goes: the stream's reply writer.
struct StreamReply {
    call_id: u64,
    replies: mpsc::UnboundedSender<Outbound>,
}

impl ReplySink for StreamReply {
    fn deliver(self: Box<Self>, payload: Vec<u8>) {
        let _ = self.replies.send(Outbound::Reply {
            call_id: self.call_id,
            payload,
        });
    }
}

/// Runs the calls of one stream in order, each entering the actor's mailbox before the
/// next frame is read, so a full mailbox slows the caller through QUIC flow control.
async fn serve_calls(
    node: &Node,
    actor: ErasedActor,
    conn: quinn::Connection,
    send: quinn::SendStream,
    mut frames: Frames,
) {
    let _serving = node.drain.serving();
    let mut draining = node.drain.draining();
    let (replies, replies_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_replies(conn, send, replies_rx));
    loop {
        // When the process is about to exit, stop taking calls and finish the replies.
        let frame = tokio::select! {
            biased;
            frame = next_frame(&mut frames) => frame,
            _ = draining.wait_for(|draining| *draining) => break,
        };
        let Some(frame) = frame else { break };
        match frame {
            Ok(Frame::Call {
                call_id,
                method,
                payload,
            }) => {
                let sink = EncodedReply::new(StreamReply {
                    call_id,
                    replies: replies.clone(),
                });
                if let Accepted::Later(accepted) =
                    actor.route().send_encoded(&method, payload, sink)
                {
                    let _ = accepted.await;
                }
            }
            Ok(Frame::Kill) => actor.kill(),
            Ok(Frame::Release) => node.control().release_hosted(actor.label().id),
            Ok(other) => {
                let error = Error::Protocol {
                    message: format!("unexpected {} frame on a call stream", frame_name(&other)),
                };
                let _ = replies.send(Outbound::Refused(error));
                break;
            }
            Err(error) => {
                // The stream's framing is lost: nothing after this can be read reliably.
                let _ = replies.send(Outbound::Refused(error));
                break;
            }
        }
    }
    drop(replies);
    let _ = writer.await;
}

/// Writes replies as they come, batching the small ones and sending large ones on
/// streams of their own.
async fn write_replies(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) {
    let mut batch = Vec::new();
    let mut buf = BytesMut::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        for outbound in batch.drain(..) {
            let (call_id, payload) = match outbound {
                Outbound::Reply { call_id, payload } => (call_id, payload),
                Outbound::Refused(error) => {
                    let _ = encode_frame(&Frame::Refused { error }, &mut buf);
                    continue;
                }
            };
            if payload.len() > OUT_OF_BAND_REPLY_BYTES {
                let conn = conn.clone();
                let payload = Bytes::from(payload);
                tokio::spawn(async move { write_out_of_band(conn, call_id, payload).await });
                continue;
            }
            let frame = Frame::Reply {
                call_id,
                payload: Bytes::from(payload),
            };
            if let Err(error) = encode_frame(&frame, &mut buf) {
                let failed = Frame::Reply {
                    call_id,
                    payload: Bytes::from(encode_error(error)),
                };
                let _ = encode_frame(&failed, &mut buf);
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    // Finish the stream and wait until the caller has read it to the end, so that a
    // worker about to exit loses no reply it has sent.
    let _ = send.finish();
    let _ = send.stopped().await;
}

fn encode_error(error: Error) -> Vec<u8> {
    let err: Result<(), Error> = Err(error);
    kt_core::codec::encode(&err, "an error reply").unwrap_or_default()
}

/// Sends one large reply on a stream of its own: a `ReplyStream` header, then the
/// payload as it is (quinn takes the buffer without copying it).
async fn write_out_of_band(conn: quinn::Connection, call_id: u64, payload: Bytes) {
    let limit = max_message_bytes();
    let (header, payload) = if payload.len() > limit {
        let error = Error::MessageTooLarge {
            size: payload.len(),
            limit,
        };
        let failed = Frame::Reply {
            call_id,
            payload: Bytes::from(encode_error(error)),
        };
        (failed, Bytes::new())
    } else {
        let header = Frame::ReplyStream {
            call_id,
            len: payload.len() as u64,
        };
        (header, payload)
    };
    let mut buf = BytesMut::new();
    if encode_frame(&header, &mut buf).is_err() {
        return;
    }
    if let Ok(mut send) = conn.open_uni().await
        && send.write_all(&buf).await.is_ok()
        && send.write_chunk(payload).await.is_ok()
    {
        let _ = send.finish();
    }
}
