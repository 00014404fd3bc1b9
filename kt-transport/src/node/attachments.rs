//! Large blobs of replies to callers on this host, handed over as sealed memfds.
//!
//! A caller on the same host and user says so when it opens a call stream; a reply to
//! it whose blobs ([`crate::wire::blob`]) are large goes as a [`Frame::AttachedReply`]
//! (the encoded reply, a few bytes) while the blobs wait here, each a sealed memfd, until
//! the caller asks this node's abstract Unix socket for them by token. The caller checks
//! the seals and maps them read-only: a 100 MB reply crosses without a copy when its blob
//! was made in shared memory, with one otherwise.
//!
//! Blobs nobody asks for (the caller died before it read the reply) are let go when the
//! connection closes or after [`UNCLAIMED_TTL`].

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kt_core::Error;
use kt_core::codec::attachments::Attachment;
use serde::{Deserialize, Serialize};

use super::lock;
use crate::wire::fd_passing::{FdConnection, FdListener, MAX_FDS_PER_MESSAGE, same_user};
use crate::wire::frame::{Frame, encode_frame, message_total};
use crate::wire::sealed_memory::SealedMemory;

/// How long blobs wait for their caller to ask for them.
pub const UNCLAIMED_TTL: Duration = Duration::from_secs(60);

/// The largest request or answer on the socket.
const MAX_MESSAGE: usize = 64 * 1024;

/// The caller's question: the blobs of `token`.
#[derive(Serialize, Deserialize)]
struct Claim {
    token: u64,
}

/// The node's answer: how many descriptors come with it, or why none.
#[derive(Serialize, Deserialize)]
struct Claimed {
    result: Result<usize, Error>,
}

/// The node's socket and the blobs waiting at it.
#[derive(Default)]
pub(crate) struct Attachments {
    socket: OnceLock<Result<String, Error>>,
    waiting: Mutex<HashMap<u64, Vec<Arc<SealedMemory>>>>,
    next_token: AtomicU64,
}

impl Attachments {
    /// The socket's name, bound and served on `runtime` the first time.
    fn socket(self: &Arc<Self>, runtime: &tokio::runtime::Handle) -> Result<String, Error> {
        self.socket
            .get_or_init(|| {
                let listener = {
                    let _in_runtime = runtime.enter();
                    FdListener::bind_unique("kt-attachments").map_err(|e| Error::Unavailable {
                        target: "this process's attachment socket".into(),
                        message: format!("cannot listen on an abstract Unix socket: {e}"),
                    })?
                };
                let name = listener.name().to_string();
                let attachments = self.clone();
                runtime.spawn(async move { attachments.serve(listener).await });
                Ok(name)
            })
            .clone()
    }

    async fn serve(self: Arc<Self>, listener: FdListener) {
        while let Ok(connection) = listener.accept().await {
            let attachments = self.clone();
            tokio::spawn(async move { attachments.answer(connection).await });
        }
    }

    /// Answers one caller's claims, for as long as it keeps the connection.
    async fn answer(&self, connection: FdConnection) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        while let Ok((len, _)) = connection.recv(&mut buf).await {
            if len == 0 {
                return;
            }
            let memories = match kt_core::codec::decode::<Claim>(&buf[..len], "a claim") {
                Ok(claim) => lock(&self.waiting).remove(&claim.token).ok_or_else(|| {
                    Error::Unavailable {
                        target: "a reply's blobs".into(),
                        message: format!(
                            "process {} holds no blobs for token {}: they were claimed, or waited \
                             longer than {} s",
                            std::process::id(),
                            claim.token,
                            UNCLAIMED_TTL.as_secs()
                        ),
                    }
                }),
                Err(error) => Err(error),
            };
            let (answer, fds): (_, Vec<BorrowedFd<'_>>) = match &memories {
                Ok(memories) => (
                    Ok(memories.len()),
                    memories.iter().map(|m| m.fd()).collect(),
                ),
                Err(error) => (Err(error.clone()), Vec::new()),
            };
            let Ok(answer) = kt_core::codec::encode(&Claimed { result: answer }, "an answer")
            else {
                return;
            };
            if connection.send(&answer, &fds).await.is_err() {
                return;
            }
        }
    }

    /// Keeps `memories` for the caller of `conn` until it claims them; their token.
    fn hold(self: &Arc<Self>, conn: &quinn::Connection, memories: Vec<Arc<SealedMemory>>) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiting).insert(token, memories);
        let (attachments, conn) = (self.clone(), conn.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = conn.closed() => {}
                _ = tokio::time::sleep(UNCLAIMED_TTL) => {}
            }
            lock(&attachments.waiting).remove(&token);
        });
        token
    }
}

/// The sealed memfd of each attachment: its own when it is one, a copy otherwise (made
/// on a blocking thread: copying 100 MB takes tens of milliseconds).
async fn sealed(attachments: Vec<Attachment>) -> Result<Vec<Arc<SealedMemory>>, Error> {
    let mut memories = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        let shared = attachment
            .shared
            .and_then(|shared| shared.downcast::<SealedMemory>().ok());
        let memory = match shared {
            Some(memory) => memory,
            None => {
                let bytes = attachment.bytes;
                tokio::task::spawn_blocking(move || SealedMemory::from_slice(&bytes))
                    .await
                    .map_err(|e| Error::Encode {
                        what: "a reply's blob".into(),
                        message: e.to_string(),
                    })?
                    .map(Arc::new)?
            }
        };
        memories.push(memory);
    }
    Ok(memories)
}

/// A reply stream's contents: its frame, then the attachments' bytes that follow it.
pub(crate) struct Outgoing {
    pub(crate) header: BytesMut,
    pub(crate) follow: Vec<Bytes>,
}

/// What sends the reply `encoded` of call `call_id` (on call stream `stream`) with its
/// blobs beside it: for a caller on this host (`same_host`) they wait at this node as
/// sealed memfds; for another, they follow the frame on its stream, as they are (quinn
/// takes the bytes without copying them). When they cannot go beside it (too many, no
/// memfd, no socket), the reply with its blobs inline.
pub(crate) async fn attached_reply(
    attachments: &Arc<Attachments>,
    runtime: &tokio::runtime::Handle,
    conn: &quinn::Connection,
    (stream, call_id): (u64, u64),
    encoded: Bytes,
    blobs: Vec<Attachment>,
    same_host: bool,
) -> Result<Outgoing, Bytes> {
    let inline = |blobs: &[Attachment]| {
        kt_core::codec::inline_attachments(&encoded, &Arc::from(blobs.to_vec()))
    };
    let lens: Vec<u64> = blobs.iter().map(|b| b.bytes.len() as u64).collect();
    let parts = std::iter::once(encoded.len() as u64).chain(lens.iter().copied());
    if let Err(too_large) = message_total(parts) {
        return Err(kt_core::codec::encode_error(&too_large));
    }
    let (socket, token, follow) = match same_host {
        true => {
            if blobs.len() > MAX_FDS_PER_MESSAGE {
                return Err(inline(&blobs));
            }
            let socket = match attachments.socket(runtime) {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::warn!("sending a reply's blobs inline: {error}");
                    return Err(inline(&blobs));
                }
            };
            let memories = match sealed(blobs.clone()).await {
                Ok(memories) => memories,
                Err(error) => {
                    tracing::warn!("sending a reply's blobs inline: {error}");
                    return Err(inline(&blobs));
                }
            };
            (Some(socket), attachments.hold(conn, memories), Vec::new())
        }
        false => (None, 0, blobs.iter().map(|b| b.bytes.clone()).collect()),
    };
    let frame = Frame::AttachedReply {
        stream,
        call_id,
        encoded: encoded.clone(),
        socket,
        token,
        lens,
    };
    let mut header = BytesMut::new();
    match encode_frame(&frame, &mut header) {
        Ok(()) => Ok(Outgoing { header, follow }),
        Err(_) => Err(inline(&blobs)),
    }
}

/// Claims the blobs of `token` at the node socket `socket`: each one checked (sealed,
/// of the size announced) and mapped read-only.
pub(crate) async fn claim(
    socket: &str,
    token: u64,
    lens: &[u64],
) -> Result<Vec<Attachment>, Error> {
    let unavailable = |message: String| Error::Unavailable {
        target: format!("the blobs of a reply (socket {socket})"),
        message,
    };
    message_total(lens.iter().copied())?;
    let connection = FdConnection::connect(socket).map_err(|e| {
        unavailable(format!(
            "cannot connect: {e}; the replying process may have exited"
        ))
    })?;
    // Memory is taken only from a process of this user (as it gives only to one).
    if !same_user(&connection).unwrap_or(false) {
        return Err(unavailable("the socket belongs to another user".into()));
    }
    let claim = kt_core::codec::encode(&Claim { token }, "a claim")?;
    connection
        .send(&claim, &[])
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (len, fds) = connection
        .recv(&mut buf)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let claimed: Claimed = kt_core::codec::decode(&buf[..len], "the answer to a claim")?;
    let count = claimed.result?;
    if count != lens.len() || fds.len() != lens.len() {
        return Err(Error::Protocol {
            message: format!(
                "a reply announced {} blobs; its node's socket said {count} and passed {} descriptors",
                lens.len(),
                fds.len()
            ),
        });
    }
    let mut blobs = Vec::with_capacity(fds.len());
    for (fd, &len) in fds.into_iter().zip(lens) {
        let memory = Arc::new(SealedMemory::from_received(fd, Some(len))?);
        blobs.push(Attachment {
            bytes: memory.clone().into_bytes(),
            shared: Some(memory),
        });
    }
    Ok(blobs)
}

/// Whether a caller that announced `caller_host` when it opened its call stream is on
/// this host as this user: descriptors passed to it are of use to it.
pub(crate) fn on_this_host(caller_host: Option<&str>) -> bool {
    matches!(
        (caller_host, crate::wire::host::announced()),
        (Some(caller), Some(here)) if caller == here
    )
}
