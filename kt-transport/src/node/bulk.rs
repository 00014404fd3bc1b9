//! Bulk streams: a data-store value's bytes from the process that holds them to a getter
//! on another host.
//!
//! A getter opens a stream of its own on its connection to the holder and asks for a
//! range of one version of one key ([`Frame::Fetch`]); the holder answers with the
//! value's size ([`Frame::Fetched`]) and then the raw bytes in chunks of
//! [`CHUNK_BYTES`], each followed by its xxh3 digest, so a getter knows how far its copy
//! is good and resumes there — from the same holder or another one — when a stream
//! breaks. The bytes go out as they are held (`Bytes` slices of the holder's mapping: no
//! copy on the sending side) and come in straight into the getter's buffer.
//!
//! Bulk streams have a lower priority than call streams on the same connection, so a
//! transfer of gigabytes never holds up a call's frames.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use kt_core::Error;
use xxhash_rust::xxh3::xxh3_64;

use super::Node;
use crate::wire::frame::{Frame, PROTOCOL_VERSION, decode_frame, encode_frame};

/// The size of one verified chunk of a bulk stream.
pub const CHUNK_BYTES: u32 = 1 << 20;

/// Call streams have priority 0: bulk bytes go out only when no call frame waits.
const BULK_PRIORITY: i32 = -1;

/// The longest `Fetched` header accepted (it carries at most an error's text).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What a holder serves a value from.
pub enum Served {
    /// All of its bytes, held.
    Whole(Bytes),
    /// A copy this process is still receiving: its chunks are sent as they are verified
    /// (a relay of a fan-out).
    Growing(Arc<dyn GrowingSource>),
}

/// A copy being received, served while it grows.
pub trait GrowingSource: Send + Sync + 'static {
    /// The value's whole size.
    fn size(&self) -> u64;

    /// Bytes `range` (one chunk) once they are verified here, or why they never will be
    /// (this process's own copy failed).
    fn chunk(&self, range: Range<u64>) -> BoxFuture<'static, Result<Bytes, Error>>;
}

/// Where a node finds the bytes a getter asks for: the data store of this process.
pub trait BulkSource: Send + Sync + 'static {
    /// The bytes of version `version` of `key` (held, or still arriving), or why this
    /// process cannot send them (it never held them, or dropped them). `relay`: the
    /// getter was told this process is its relay, whose copy may be about to start.
    fn open(
        &self,
        key: String,
        version: u64,
        relay: bool,
    ) -> BoxFuture<'static, Result<Served, Error>>;

    /// `bytes` more of `key`'s value went out (for the store's traffic figures).
    fn sent(&self, key: &str, bytes: u64) {
        let _ = (key, bytes);
    }

    /// Drops this process's copies of `versions` of `key`: they were removed, or fell out
    /// of the key's retention.
    fn forget(&self, key: &str, versions: &[u64]) {
        let _ = (key, versions);
    }
}

static SOURCE: OnceLock<Arc<dyn BulkSource>> = OnceLock::new();

/// Makes this process's node answer bulk streams from `source`. The first source stays;
/// a later one is ignored (there is one store per process).
pub fn serve_bulk_from(source: Arc<dyn BulkSource>) {
    let _ = SOURCE.set(source);
}

/// One range fetch's request: from whom, which value, where its range starts.
#[derive(Debug, Clone, Copy)]
pub struct RangeFetch<'a> {
    /// The holder's node.
    pub holder: SocketAddr,
    /// The data-store key.
    pub key: &'a str,
    /// The key's version.
    pub version: u64,
    /// The value's whole size.
    pub size: u64,
    /// Where the range starts.
    pub offset: u64,
    /// The holder is this getter's relay (see [`Frame::Fetch`]).
    pub relay: bool,
}

/// A fetch that stopped before its end: how many bytes from the start were verified
/// (resume there), and why it stopped.
#[derive(Debug)]
pub struct FetchFailure {
    /// Bytes from the start of the value that arrived and passed their digests.
    pub verified: u64,
    /// Why the fetch stopped.
    pub error: Error,
    /// True when the holder answered that it does not have the value (as opposed to a
    /// holder that could not be reached or whose stream broke).
    pub not_held: bool,
}

/// Serves one `Fetch`: the header, then the chunks of `range` (its end clipped to the
/// value's size).
pub(super) async fn serve_fetch(
    mut send: quinn::SendStream,
    key: String,
    key_version: u64,
    range: Range<u64>,
    relay: bool,
) {
    let _ = send.set_priority(BULK_PRIORITY);
    let source = SOURCE.get();
    let opened = match source {
        Some(source) => source.open(key.clone(), key_version, relay).await,
        None => Err(Error::KeyNotFound { key: key.clone() }),
    };
    let opened = opened.and_then(|served| {
        let size = match &served {
            Served::Whole(bytes) => bytes.len() as u64,
            Served::Growing(growing) => growing.size(),
        };
        let end = range.end.min(size);
        let chunk = u64::from(CHUNK_BYTES);
        if !range.start.is_multiple_of(chunk)
            || range.start > end
            || !(end.is_multiple_of(chunk) || end == size)
        {
            return Err(Error::Protocol {
                message: format!(
                    "a fetch of '{key}' asks for bytes {}..{}, which are not chunk \
                     boundaries within its {size} bytes",
                    range.start, range.end
                ),
            });
        }
        Ok((served, size, end))
    });
    let header = Frame::Fetched {
        result: opened
            .as_ref()
            .map(|(_, size, _)| *size)
            .map_err(Clone::clone),
        chunk: CHUNK_BYTES,
    };
    let mut buf = BytesMut::new();
    if encode_frame(&header, &mut buf).is_err() || send.write_all(&buf).await.is_err() {
        return;
    }
    let Ok((served, _, until)) = opened else {
        let _ = send.finish();
        return;
    };
    // The range was checked against the size above.
    let (mut at, until) = (range.start as usize, until as usize);
    while at < until {
        let end = until.min(at + CHUNK_BYTES as usize);
        let chunk = match &served {
            Served::Whole(bytes) => bytes.slice(at..end),
            Served::Growing(growing) => match growing.chunk(at as u64..end as u64).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    // This relay's own copy failed: the getter resumes elsewhere.
                    tracing::debug!("relaying '{key}' {key_version}: {error}");
                    let _ = send.reset(quinn::VarInt::from_u32(1));
                    return;
                }
            },
        };
        let digest = Bytes::copy_from_slice(&xxh3_64(&chunk).to_le_bytes());
        let len = chunk.len() as u64;
        if send.write_all_chunks(&mut [chunk, digest]).await.is_err() {
            // The getter went away; it resumes elsewhere if it still wants the bytes.
            return;
        }
        if let Some(source) = source {
            source.sent(&key, len);
        }
        at = end;
    }
    let _ = send.finish();
}

/// Serves one `Forget`: drops the copies, then answers `Forgot`.
pub(super) async fn serve_forget(mut send: quinn::SendStream, key: &str, versions: &[u64]) {
    if let Some(source) = SOURCE.get() {
        source.forget(key, versions);
    }
    let mut buf = BytesMut::new();
    if encode_frame(&Frame::Forgot, &mut buf).is_ok() && send.write_all(&buf).await.is_ok() {
        let _ = send.finish();
    }
}

/// Reads the one frame that opens the answer on a store stream.
async fn read_answer(recv: &mut quinn::RecvStream, holder: SocketAddr) -> Result<Frame, Error> {
    let broken = |e: quinn::ReadExactError| Error::Unavailable {
        target: format!("the store holder at {holder}"),
        message: format!("the stream broke: {e}"),
    };
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.map_err(broken)?;
    let length = u32::from_be_bytes(prefix) as usize;
    if length > MAX_HEADER_BYTES {
        return Err(Error::Protocol {
            message: format!("a store stream's answer announces {length} bytes"),
        });
    }
    let mut body = vec![0u8; length];
    recv.read_exact(&mut body).await.map_err(broken)?;
    decode_frame(&body)
}

impl Node {
    /// Tells the holder whose node is at `holder` to drop its copies of `versions` of
    /// `key`; resolves once it has.
    pub async fn tell_forget(
        &self,
        holder: SocketAddr,
        key: &str,
        versions: &[u64],
    ) -> Result<(), Error> {
        let unreachable = |message: String| Error::Unavailable {
            target: format!("the store holder at {holder}"),
            message,
        };
        let peer = self.peer(holder).await?;
        let (mut send, mut recv) = peer
            .conn
            .open_bi()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = BytesMut::new();
        let forget = Frame::Forget {
            version: PROTOCOL_VERSION,
            key: key.to_string(),
            versions: versions.to_vec(),
        };
        encode_frame(&forget, &mut request)?;
        send.write_all(&request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = send.finish();
        match read_answer(&mut recv, holder).await? {
            Frame::Forgot => Ok(()),
            Frame::Refused { error } => Err(error),
            other => Err(Error::Protocol {
                message: format!("a Forget was answered with {other:?}"),
            }),
        }
    }

    /// Fetches bytes `offset..offset + part.len()` of the value `request` names into
    /// `part`. `offset` is a multiple of [`CHUNK_BYTES`], and so is the range's end
    /// unless it is the value's size.
    /// Several holders may each serve a range of one value at once (the parts of one
    /// buffer split with `split_at_mut`). `verified_chunk` hears of each chunk that
    /// passed its digest, as it does (a relay serves it on from then).
    pub async fn fetch_range(
        &self,
        request: RangeFetch<'_>,
        part: &mut [u8],
        verified_chunk: &(dyn Fn(Range<u64>) + Send + Sync),
    ) -> Result<(), FetchFailure> {
        let RangeFetch {
            holder,
            key,
            version,
            size,
            offset,
            relay,
        } = request;
        let mut verified = offset;
        let fail = |verified, error, not_held| FetchFailure {
            verified,
            error,
            not_held,
        };
        let unreachable = |message: String| Error::Unavailable {
            target: format!("the store holder at {holder}"),
            message,
        };
        let peer = self
            .peer(holder)
            .await
            .map_err(|error| fail(verified, error, false))?;
        let (mut send, mut recv) = peer
            .conn
            .open_bi()
            .await
            .map_err(|e| fail(verified, unreachable(e.to_string()), false))?;
        let _ = send.set_priority(BULK_PRIORITY);
        let mut request = BytesMut::new();
        let end = offset + part.len() as u64;
        let fetch = Frame::Fetch {
            version: PROTOCOL_VERSION,
            key: key.to_string(),
            key_version: version,
            offset,
            end,
            relay,
        };
        encode_frame(&fetch, &mut request).map_err(|error| fail(verified, error, false))?;
        send.write_all(&request)
            .await
            .map_err(|e| fail(verified, unreachable(e.to_string()), false))?;
        let _ = send.finish();

        let broken = |e: quinn::ReadExactError| unreachable(format!("the bulk stream broke: {e}"));
        let (held, chunk) = match read_answer(&mut recv, holder).await {
            Ok(Frame::Fetched {
                result: Ok(held),
                chunk,
            }) => (held, chunk),
            Ok(Frame::Fetched {
                result: Err(error), ..
            }) => return Err(fail(verified, error, true)),
            Ok(other) => {
                let error = Error::Protocol {
                    message: format!("a bulk stream answered with {other:?}"),
                };
                return Err(fail(verified, error, false));
            }
            Err(error) => return Err(fail(verified, error, false)),
        };
        if held != size || chunk == 0 {
            let error = Error::Protocol {
                message: format!(
                    "the holder at {holder} has {held} bytes for version {version} of \
                     '{key}', where {size} were expected"
                ),
            };
            return Err(fail(verified, error, false));
        }
        while verified < end {
            let start = (verified - offset) as usize;
            let stop = part.len().min(start + chunk as usize);
            let chunk_bytes = &mut part[start..stop];
            recv.read_exact(chunk_bytes)
                .await
                .map_err(|e| fail(verified, broken(e), false))?;
            let mut digest = [0u8; 8];
            recv.read_exact(&mut digest)
                .await
                .map_err(|e| fail(verified, broken(e), false))?;
            if u64::from_le_bytes(digest) != xxh3_64(chunk_bytes) {
                let error = Error::Protocol {
                    message: format!(
                        "the chunk at offset {verified} of version {version} of '{key}' \
                         from {holder} failed its integrity check"
                    ),
                };
                return Err(fail(verified, error, false));
            }
            let done = offset + stop as u64;
            verified_chunk(verified..done);
            verified = done;
        }
        Ok(())
    }
}
