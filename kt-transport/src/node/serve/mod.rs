//! The serving side of a stream: calls in, replies out.
//!
//! Each stream a peer opens starts with one frame that says what it is: `Open` (calls
//! for one exported actor follow) or `Hello` (a worker this driver started reports in).
//! Anything wrong with the bytes — garbage, a truncated or oversized frame, an unknown
//! actor, another protocol version — is answered with a `Refused` frame on that stream
//! and never affects other streams or the process (rule X3). Unknown methods and wrong
//! argument types are answered per call by the actor's own decoding. While the actor is
//! idle, it reads its call stream itself (`call_stream`): a call then runs without a hop
//! from this task to the actor's.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use kt_core::backend::{Accepted, EncodedReply, SharedReplySink};
use kt_core::codec::attachments::Attachment;
use kt_core::{ErasedActor, Error};
use tokio::sync::watch;
use tokio_util::codec::FramedRead;

mod call_stream;

use super::Node;
use super::attachments::attached_reply;
use super::control::{AttachStream, HelloStream};
use super::writer::OrderedWriter;
use crate::wire::budget::{Budgeted, ConnectionBudget};
use crate::wire::call::{REPLY_HEADER, write_refused, write_reply};
use crate::wire::frame::{
    Frame, PROTOCOL_VERSION, codec, decode_frame, encode_frame, max_message_bytes,
};
use call_stream::{CallStream, Calls, Served};

/// Replies larger than this go on a stream of their own, so that they never hold up the
/// small replies behind them.
const OUT_OF_BAND_REPLY_BYTES: usize = 256 * 1024;

/// The frames of one incoming stream.
pub(crate) type Frames = FramedRead<Budgeted<quinn::RecvStream>, crate::wire::frame::FrameCodec>;

/// The frames of a stream this process opened: it asked for what comes on it.
pub(crate) fn own_frames(recv: quinn::RecvStream) -> Frames {
    FramedRead::new(Budgeted::unbounded(recv), codec(max_message_bytes()))
}

/// The frames of a stream a peer opened, each frame that waits for more bytes admitted
/// against the connection's budget first.
pub(crate) fn peer_frames(recv: quinn::RecvStream, budget: &ConnectionBudget) -> Frames {
    let (reader, admission) = budget.reader(recv);
    FramedRead::new(reader, codec(max_message_bytes()).admitted_by(admission))
}

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
    budget: ConnectionBudget,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut frames = peer_frames(recv, &budget);
    let first = match next_frame(&mut frames).await {
        Some(Ok(frame)) => frame,
        Some(Err(error)) => return refuse(&mut send, error).await,
        None => return,
    };
    match first {
        Frame::Open {
            version,
            actor_id,
            host,
        } => {
            if version != PROTOCOL_VERSION {
                return refuse_calls(&mut send, version_error(version)).await;
            }
            let Some(actor) = node.exported(actor_id) else {
                let error = Error::Unavailable {
                    target: format!("actor #{actor_id}"),
                    message: format!(
                        "node {} serves no such actor: it stopped, or never lived here",
                        node.address()
                    ),
                };
                return refuse_calls(&mut send, error).await;
            };
            let same_host = super::attachments::on_this_host(host.as_deref());
            serve_calls(&node, actor, conn, send, frames, same_host).await;
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
        Frame::Fetch {
            version,
            key,
            key_version,
            offset,
            end,
            relay,
        } => {
            if version != PROTOCOL_VERSION {
                return refuse(&mut send, version_error(version)).await;
            }
            let range = offset..end;
            super::bulk::serve_fetch(send, key, key_version, range, relay).await;
        }
        Frame::Forget {
            version,
            key,
            versions,
        } => {
            if version != PROTOCOL_VERSION {
                return refuse(&mut send, version_error(version)).await;
            }
            super::bulk::serve_forget(send, &key, &versions).await;
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
        Frame::Attach { .. } => "Attach",
        Frame::ReplyStream { .. } => "ReplyStream",
        Frame::AttachedReply { .. } => "AttachedReply",
        Frame::Refused { .. } => "Refused",
        Frame::Gone { .. } => "Gone",
        Frame::Fetch { .. } => "Fetch",
        Frame::Fetched { .. } => "Fetched",
        Frame::Forget { .. } => "Forget",
        Frame::Forgot => "Forgot",
    }
}

/// The next frame of a stream: `None` at its end, an error for unreadable bytes.
pub(crate) async fn next_frame(frames: &mut Frames) -> Option<Result<Frame, Error>> {
    Some(
        next_body(frames)
            .await?
            .and_then(|body| decode_frame(&body)),
    )
}

/// The next frame body of a stream (without its length prefix): `None` at its end, an
/// error for a frame that cannot be cut out.
async fn next_body(frames: &mut Frames) -> Option<Result<BytesMut, Error>> {
    Some(frames.next().await?.map_err(frame_error))
}

/// Why a frame could not be cut out of a stream.
fn frame_error(error: std::io::Error) -> Error {
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
    Error::Protocol { message }
}

/// Refuses a stream that did not open as a call stream.
async fn refuse(send: &mut quinn::SendStream, error: Error) {
    tracing::debug!("refusing a stream: {error}");
    let mut buf = BytesMut::new();
    let encoded = encode_frame(&Frame::Refused { error }, &mut buf);
    finish_with(send, encoded.map(|()| buf)).await;
}

/// Refuses a call stream before serving it (its caller reads binary call-stream frames).
async fn refuse_calls(send: &mut quinn::SendStream, error: Error) {
    tracing::debug!("refusing a call stream: {error}");
    let mut buf = BytesMut::new();
    let encoded = write_refused(&mut buf, &error);
    finish_with(send, encoded.map(|()| buf)).await;
}

/// Writes a refusal (if it could be encoded) and finishes the stream.
async fn finish_with(send: &mut quinn::SendStream, refusal: Result<BytesMut, Error>) {
    if let Ok(buf) = refusal {
        let _ = send.write_all(&buf).await;
    }
    let _ = send.finish();
}

/// The replies of one call stream: written in the order they come, inline when the
/// stream is idle; large ones go on streams of their own. The stream is finished when
/// the serving loop and every reply slot are gone.
struct Replies {
    writer: Arc<OrderedWriter<()>>,
    conn: quinn::Connection,
    /// The call stream's id, which a large reply names.
    stream_id: u64,
    runtime: tokio::runtime::Handle,
    /// The calls read and not answered yet, counted with the stream.
    calls: Arc<Calls>,
    /// The stream, lent to the actor again once its last call is answered.
    stream: Weak<CallStream>,
    /// The caller is on this host: large blobs go beside replies as sealed memory.
    same_host: bool,
    attachments: Arc<super::attachments::Attachments>,
}

impl Replies {
    fn send(&self, call_id: u64, payload: Bytes) {
        if payload.len() > OUT_OF_BAND_REPLY_BYTES {
            let (conn, stream_id) = (self.conn.clone(), self.stream_id);
            self.runtime.spawn(async move {
                write_out_of_band(conn, stream_id, call_id, payload).await;
            });
            return;
        }
        self.append(call_id, &payload);
    }

    /// A call is answered, or will never be (the actor died): no longer awaited. (Its
    /// reply, written just before, still counted: see `append`.) The last one lets the
    /// actor read the stream again.
    fn answered(&self) {
        let last = self.calls.unanswered.fetch_sub(1, Ordering::AcqRel) == 1;
        if last
            && !self.calls.lent.load(Ordering::Acquire)
            && let Some(stream) = self.stream.upgrade()
        {
            stream.try_lend();
        }
    }

    /// Appends a small reply to the stream.
    fn append(&self, call_id: u64, payload: &[u8]) {
        let Some(mut appender) = self.writer.append() else {
            return;
        };
        let (buf, ()) = appender.parts(REPLY_HEADER + payload.len());
        if let Err(error) = write_reply(buf, call_id, payload) {
            let _ = write_reply(buf, call_id, &kt_core::backend::encode_error(&error));
        }
        // More calls of this stream still to answer (this one counts until it is
        // written), or more at hand for the actor reading them: this reply joins a batch.
        if self.calls.unanswered.load(Ordering::Acquire) > 1
            || self.calls.more_at_hand.load(Ordering::Relaxed)
        {
            appender.batch();
        }
    }

    /// The stream can no longer be read: every pending call fails with `error`.
    fn refuse(&self, error: &Error) {
        if let Some(mut appender) = self.writer.append() {
            let _ = write_refused(appender.parts(0).0, error);
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.writer.finish();
    }
}

/// Every call of the stream is answered through its `Replies`, told which call: one
/// shared sink, no allocation per call.
impl SharedReplySink for Replies {
    fn deliver(&self, call: u64, payload: Bytes) {
        self.send(call, payload);
        self.answered();
    }

    fn deliver_slice(&self, call: u64, payload: &[u8]) {
        // Small replies are copied into the stream's buffer as they are; large ones go
        // out of band and need bytes of their own.
        match payload.len() > OUT_OF_BAND_REPLY_BYTES {
            true => self.send(call, Bytes::copy_from_slice(payload)),
            false => self.append(call, payload),
        }
        self.answered();
    }

    /// Every caller takes attachments: on this host as sealed memory, elsewhere as raw
    /// bytes behind the reply on its own stream (no copy into the reply).
    fn attaches(&self) -> bool {
        true
    }

    fn deliver_attached(&self, call: u64, encoded: &[u8], blobs: Vec<Attachment>) {
        let (conn, stream_id) = (self.conn.clone(), self.stream_id);
        let (attachments, runtime) = (self.attachments.clone(), self.runtime.clone());
        let encoded = Bytes::copy_from_slice(encoded);
        let same_host = self.same_host;
        self.runtime.spawn(async move {
            let id = (stream_id, call);
            let reply =
                attached_reply(&attachments, &runtime, &conn, id, encoded, blobs, same_host);
            match reply.await {
                Ok(outgoing) => {
                    let mut chunks = Vec::with_capacity(1 + outgoing.follow.len());
                    chunks.push(outgoing.header.freeze());
                    chunks.extend(outgoing.follow);
                    if let Ok(mut send) = conn.open_uni().await
                        && send.write_all_chunks(&mut chunks).await.is_ok()
                    {
                        let _ = send.finish();
                    }
                }
                Err(inline) => write_out_of_band(conn, stream_id, call, inline).await,
            }
        });
        self.answered();
    }

    fn abandoned(&self, call: u64) {
        // The actor went away without answering (killed while the call ran or waited in
        // its mailbox): the caller hears why now, not when the stream or process ends.
        let gone = self.stream.upgrade().and_then(|stream| stream.actor_gone());
        if let Some(gone) = gone {
            self.append(call, &kt_core::backend::encode_error(&gone));
        }
        self.answered();
    }
}

/// Runs the calls of one stream in order, each entering the actor's mailbox before the
/// next frame is read, so a full mailbox slows the caller through QUIC flow control.
/// While the actor is idle, it reads the calls itself ([`CallStream`]).
async fn serve_calls(
    node: &Node,
    actor: ErasedActor,
    conn: quinn::Connection,
    send: quinn::SendStream,
    frames: Frames,
    same_host: bool,
) {
    let _serving = node.drain.serving();
    let mut draining = node.drain.draining();
    let writer = Arc::new(OrderedWriter::new(BytesMut::new(), ()));
    let calls = Arc::new(Calls::default());
    let stream_id = u64::from(frames.get_ref().get_ref().id());
    let (stream, replies) = CallStream::new(frames, actor.route(), calls.clone(), |stream| {
        Arc::new(Replies {
            writer: writer.clone(),
            conn,
            stream_id,
            runtime: node.runtime.clone(),
            calls,
            stream,
            same_host,
            attachments: node.attachments.clone(),
        })
    });
    // Finish the stream and wait until the caller has read it to the end, so that a
    // worker about to exit loses no reply it has sent.
    let written = tokio::spawn(async move {
        if let Ok(send) = writer.write_until_finished(send).await {
            let _ = send.stopped().await;
        }
    });
    loop {
        // When the process is about to exit, stop taking calls and finish the replies.
        let served = tokio::select! {
            biased;
            served = std::future::poll_fn(|cx| stream.poll_serving(cx)) => served,
            _ = draining.wait_for(|draining| *draining) => break,
        };
        let served = match served {
            Served::Call(call) => {
                let sink = EncodedReply::shared(replies.clone(), call.call_id);
                Ok(actor.route().send_encoded(&call.method, call.args, sink))
            }
            Served::Defined => Ok(Accepted::Now),
            Served::Kill => {
                actor.kill();
                Ok(Accepted::Now)
            }
            Served::Release => {
                node.control().release_hosted(actor.label().id);
                Ok(Accepted::Now)
            }
            Served::End => break,
            Served::Broken(error) => Err(error),
        };
        match served {
            Ok(Accepted::Now) => {}
            Ok(accepted) => {
                let _ = accepted.admitted().await;
            }
            Err(error) => {
                // The stream's framing is lost: nothing after this can be read reliably.
                replies.refuse(&error);
                break;
            }
        }
        stream.done_with_frame();
    }
    stream.close();
    drop(replies);
    let _ = written.await;
}

/// Sends one large reply on a stream of its own: a `ReplyStream` header, then the
/// payload as it is (quinn takes the buffer without copying it).
async fn write_out_of_band(conn: quinn::Connection, stream: u64, call_id: u64, payload: Bytes) {
    let limit = max_message_bytes();
    let payload = match payload.len() > limit {
        true => kt_core::backend::encode_error(&Error::MessageTooLarge {
            size: payload.len(),
            limit,
        }),
        false => payload,
    };
    let header = Frame::ReplyStream {
        stream,
        call_id,
        len: payload.len() as u64,
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
