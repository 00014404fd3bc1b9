//! The wire format: length-delimited frames on QUIC streams.
//!
//! Every frame is a 4-byte big-endian length followed by its body. The first frame of
//! every stream is the MessagePack encoding of a [`Frame`]: it says what the stream is for
//! and carries the protocol version. Control streams go on with MessagePack frames; call
//! streams go on with the binary frames of [`super::call`], the hot path. Frames longer than the message limit are refused with
//! [`Error::MessageTooLarge`] before they are sent, and a receiver never buffers more than
//! the limit for one frame — and never reserves memory for bytes that have not arrived:
//! a frame's announced length reserves nothing ([`FrameCodec`]), so a peer announcing
//! huge frames on many streams costs only what it actually sends, and what it sends is
//! read only as far as its connection's budget admits ([`super::budget`]).

use std::sync::Arc;

use bytes::BytesMut;
use kt_core::handle_wire::HandleAddress;
use kt_core::{Error, codec};
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

use super::budget::Admission;

/// The version of this wire protocol; peers of another version are refused.
pub const PROTOCOL_VERSION: u16 = 7;

/// The default limit on one message, in bytes (override with `KT_MAX_MESSAGE_BYTES`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// Room for a frame's own fields around its payload.
pub(crate) const FRAME_OVERHEAD: usize = 4096;

/// The largest payload (call arguments or reply) this process sends or accepts.
pub fn max_message_bytes() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("KT_MAX_MESSAGE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    })
}

/// The size of a message made of parts of `lens` bytes, or [`Error::MessageTooLarge`]
/// when it passes [`max_message_bytes`].
pub fn message_total(lens: impl IntoIterator<Item = u64>) -> Result<usize, Error> {
    let limit = max_message_bytes();
    let total = lens
        .into_iter()
        .try_fold(0u64, |sum, len| sum.checked_add(len))
        .and_then(|total| usize::try_from(total).ok());
    match total {
        Some(total) if total <= limit => Ok(total),
        _ => Err(Error::MessageTooLarge {
            size: total.unwrap_or(usize::MAX),
            limit,
        }),
    }
}

/// One unit of the wire protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Worker → driver, first frame of the worker's control stream: the actor it hosts
    /// is ready (its address) or failed to start.
    Hello {
        /// The sender's protocol version.
        version: u16,
        /// The token the driver gave this worker.
        token: u64,
        /// The hosted actor's address, or why it could not start.
        result: Result<HandleAddress, Error>,
    },
    /// Driver → dialed worker, first frame of the control stream the driver opens to a
    /// worker it started and then dialed (a pod): the worker answers `Hello` on it.
    Attach {
        /// The sender's protocol version.
        version: u16,
        /// The token the driver gave this worker in its config.
        token: u64,
    },
    /// Caller → node, first frame of a call stream: the calls that follow are for this actor.
    Open {
        /// The sender's protocol version.
        version: u16,
        /// The actor the calls are for.
        actor_id: u64,
        /// The caller's host, network namespace and user
        /// ([`this_host_and_user`](super::host::this_host_and_user)): a node on the same
        /// one hands large replies' blobs over as sealed memory ([`Frame::AttachedReply`]).
        #[serde(default)]
        host: Option<String>,
    },
    /// Node → caller, the only frame of a reply stream of its own: the next `len` bytes
    /// of the stream, unframed, are the call's encoded reply (a tag byte, then the value
    /// or the error: `kt_core::codec::with_encoded_reply`). Large
    /// replies travel this way so that they hold up no other reply, and so that neither
    /// side copies them into or out of a frame.
    ReplyStream {
        /// The id of the call stream the call came on (its QUIC stream id).
        stream: u64,
        /// The call this answers.
        call_id: u64,
        /// How many bytes follow.
        len: u64,
    },
    /// Node → caller, the only frame of a reply stream of its own: the encoded reply of a
    /// call whose large blobs ([`super::blob`]) go beside it. For a caller on the same
    /// host (`socket` set) they wait as sealed memfds at the node's abstract Unix socket,
    /// to be asked for with `token`; otherwise they follow on this stream, unframed, in
    /// index order, each as long as `lens` says.
    AttachedReply {
        /// The id of the call stream the call came on (its QUIC stream id).
        stream: u64,
        /// The call this answers.
        call_id: u64,
        /// The encoded reply, referring to its attachments by index.
        encoded: bytes::Bytes,
        /// The node's abstract Unix socket, for a caller on its host.
        socket: Option<String>,
        /// What to ask the socket for.
        token: u64,
        /// Each attachment's size, in index order.
        lens: Vec<u64>,
    },
    /// Node → opener: the stream cannot be served (garbage first frame, unknown
    /// attach token, ...). A call stream's refusals are binary (see [`super::call`]).
    Refused {
        /// Why.
        error: Error,
    },
    /// Worker → driver on the control stream: the hosted actor stopped, and why; the
    /// worker exits next.
    Gone {
        /// Why the actor stopped.
        cause: kt_core::DeathCause,
    },
    /// Getter → holder, the only frame of a bulk stream's request: send the bytes of
    /// version `key_version` of `key` from `offset` to `end` (both multiples of the
    /// chunk size, or `end` the value's size; `None`: to the end).
    Fetch {
        /// The sender's protocol version.
        version: u16,
        /// The data-store key.
        key: String,
        /// The key's version.
        key_version: u64,
        /// Where to start, in bytes.
        offset: u64,
        /// Where to stop (exclusive), in bytes; past the value's size means its end.
        end: u64,
        /// True when the directory made the holder this getter's relay: it may still be
        /// receiving the value (or about to start), so it waits for its copy a moment
        /// instead of answering that it has none.
        relay: bool,
    },
    /// A process → a holder, the only frame of a store-control stream: drop your copies of
    /// these versions of `key` (removed, or past the key's retention).
    Forget {
        /// The sender's protocol version.
        version: u16,
        /// The data-store key.
        key: String,
        /// The versions to drop.
        versions: Vec<u64>,
    },
    /// Holder → the sender of a `Forget`: done.
    Forgot,
    /// Holder → getter, the first frame of a bulk stream's reply: the value's size (then
    /// its bytes follow from the asked offset, unframed, in chunks of `chunk` bytes, the
    /// last one shorter, each followed by its 8-byte xxh3 digest), or why not.
    Fetched {
        /// The value's whole size, or why it cannot be sent.
        result: Result<u64, Error>,
        /// The chunk size.
        chunk: u32,
    },
}

/// How much a frame's buffer grows at a time while its bytes arrive.
const GROWTH: usize = 64 * 1024;

/// The decoder of length-delimited frames of at most `limit` payload bytes (plus room
/// for the frame's own fields).
pub fn codec(limit: usize) -> FrameCodec {
    FrameCodec {
        max_frame: limit.saturating_add(FRAME_OVERHEAD),
        admission: None,
    }
}

/// Cuts 4-byte big-endian length-prefixed frames out of a byte stream.
///
/// Unlike tokio-util's `LengthDelimitedCodec`, which reserves a frame's whole announced
/// length as soon as it reads the prefix, it lets the buffer grow only as the frame's
/// bytes arrive (at most 64 KiB ahead of them): an authenticated peer that sends
/// 4-byte prefixes announcing 128 MiB on hundreds of streams reserves nothing, where it
/// used to make a worker reserve tens of gigabytes of address space and abort.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
    /// Where a frame that must wait for more bytes asks for its share of the
    /// connection's budget ([`super::budget`]); none for streams this process opened.
    admission: Option<Arc<Admission>>,
}

impl FrameCodec {
    /// Frames that must wait for more bytes are admitted through `admission` first.
    pub fn admitted_by(mut self, admission: Arc<Admission>) -> FrameCodec {
        self.admission = Some(admission);
        self
    }
}

/// A frame announced a length over the limit; the stream cannot be read further.
#[derive(Debug, thiserror::Error)]
#[error("a frame announces {announced} bytes, over the {limit}-byte limit")]
pub struct FrameTooLong {
    /// The length the prefix announced.
    pub announced: usize,
    /// The most this decoder accepts.
    pub limit: usize,
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        let Some(prefix) = src.first_chunk::<4>() else {
            return Ok(None);
        };
        let announced = u32::from_be_bytes(*prefix) as usize;
        if announced > self.max_frame {
            let error = FrameTooLong {
                announced,
                limit: self.max_frame,
            };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
        }
        let whole = 4 + announced;
        if src.len() < whole {
            if let Some(admission) = &self.admission {
                admission.want(whole);
            }
            // Room for what is likely to come next, never for the whole announcement.
            let missing = whole - src.len();
            src.reserve(missing.min(GROWTH));
            return Ok(None);
        }
        if let Some(admission) = &self.admission {
            admission.done();
        }
        let mut frame = src.split_to(whole);
        let _ = frame.split_to(4);
        Ok(Some(frame))
    }
}

/// Appends `frame`, length-prefixed, to `out`.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), Error> {
    let body = codec::encode(frame, "a frame")?;
    let limit = max_message_bytes();
    let too_large = || Error::MessageTooLarge {
        size: body.len(),
        limit,
    };
    if body.len() > limit.saturating_add(FRAME_OVERHEAD) {
        return Err(too_large());
    }
    let length = u32::try_from(body.len()).map_err(|_| too_large())?;
    out.reserve(4 + body.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decodes one frame body (without its length prefix).
pub fn decode_frame(body: &[u8]) -> Result<Frame, Error> {
    codec::decode::<Frame>(body, "a frame").map_err(|error| Error::Protocol {
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::Decoder;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        encode_frame(&frame, &mut buf).expect("encode");
        let body = codec(max_message_bytes())
            .decode(&mut buf)
            .expect("decode")
            .expect("a whole frame");
        assert_eq!(decode_frame(&body).expect("frame"), frame);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_message_of_parts_is_refused_past_the_limit_and_on_overflow() {
        let limit = max_message_bytes() as u64;
        assert_eq!(message_total([3, 4]).expect("small"), 7);
        assert!(matches!(
            message_total([limit, 1]),
            Err(Error::MessageTooLarge { .. })
        ));
        assert!(matches!(
            message_total([u64::MAX, 2]),
            Err(Error::MessageTooLarge {
                size: usize::MAX,
                ..
            })
        ));
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in every_kind() {
            round_trip(frame);
        }
    }

    #[test]
    fn garbage_and_truncated_bodies_are_protocol_errors() {
        assert!(matches!(
            decode_frame(&[0xc1, 0x00, 0xff]),
            Err(Error::Protocol { .. })
        ));
        let mut buf = BytesMut::new();
        encode_frame(
            &Frame::Open {
                version: PROTOCOL_VERSION,
                actor_id: 9,
                host: None,
            },
            &mut buf,
        )
        .expect("encode");
        let body = &buf[4..buf.len() - 1];
        assert!(matches!(decode_frame(body), Err(Error::Protocol { .. })));
    }

    #[test]
    fn an_announced_length_reserves_no_more_than_one_growth_step() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(100u32 << 20).to_be_bytes());
        buf.extend_from_slice(&[1, 2, 3]);
        let mut codec = codec(max_message_bytes());
        assert!(codec.decode(&mut buf).expect("no error").is_none());
        assert!(
            buf.capacity() <= GROWTH + 64,
            "reserved {} bytes for a frame that has not arrived",
            buf.capacity()
        );
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let mut wire = BytesMut::new();
        for n in [0usize, 1, 70_000, 5] {
            let frame = Frame::Refused {
                error: Error::Protocol {
                    message: "x".repeat(n),
                },
            };
            encode_frame(&frame, &mut wire).expect("encode");
        }
        let mut codec = codec(max_message_bytes());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(1000) {
            buf.extend_from_slice(chunk);
            while let Some(body) = codec.decode(&mut buf).expect("decode") {
                out.push(decode_frame(&body).expect("frame"));
            }
        }
        let lengths: Vec<usize> = out
            .iter()
            .map(|f| match f {
                Frame::Refused {
                    error: Error::Protocol { message },
                } => message.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lengths, [0, 1, 70_000, 5]);
    }

    #[test]
    fn oversized_frames_are_refused_by_the_decoder() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&[0u8; 16]);
        assert!(codec(1024).decode(&mut buf).is_err());
    }
}

/// One frame of every kind, for the round-trip test and the fuzzing seeds.
#[cfg(test)]
pub(crate) fn every_kind() -> Vec<Frame> {
    let address = HandleAddress {
        node: "127.0.0.1:7070".into(),
        label: kt_core::ActorLabel {
            id: 7,
            type_name: "app::Counter".into(),
            name: Some("counter".into()),
        },
    };
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            token: 42,
            result: Ok(address),
        },
        Frame::Hello {
            version: PROTOCOL_VERSION,
            token: 43,
            result: Err(Error::NoRuntime),
        },
        Frame::Attach {
            version: PROTOCOL_VERSION,
            token: 44,
        },
        Frame::Open {
            version: PROTOCOL_VERSION,
            actor_id: 7,
            host: Some("boot/net:[1]/uid 0".into()),
        },
        Frame::ReplyStream {
            stream: 4,
            call_id: 2,
            len: 100 << 20,
        },
        Frame::AttachedReply {
            stream: 4,
            call_id: 3,
            encoded: bytes::Bytes::from_static(&[0, 0xd6, 0x4b, 0, 0, 0, 0]),
            socket: Some("kt-attachments-1-2".into()),
            token: 9,
            lens: vec![100 << 20],
        },
        Frame::Refused {
            error: Error::Protocol {
                message: "bad".into(),
            },
        },
        Frame::Gone {
            cause: kt_core::DeathCause::Killed,
        },
        Frame::Fetch {
            version: PROTOCOL_VERSION,
            key: "policy/weights".into(),
            key_version: 3,
            offset: 1 << 20,
            end: 8 << 20,
            relay: true,
        },
        Frame::Fetched {
            result: Ok(100 << 20),
            chunk: 1 << 20,
        },
        Frame::Forget {
            version: PROTOCOL_VERSION,
            key: "policy/weights".into(),
            versions: vec![1, 2],
        },
        Frame::Forgot,
        Frame::Fetched {
            result: Err(Error::KeyNotFound { key: "w".into() }),
            chunk: 1 << 20,
        },
    ]
}

/// Writes the fuzzing corpus seeds into `fuzz/corpus/frame_decoder`: one encoded frame of
/// every kind, and a call stream's binary frames after an `Open`.
/// `cargo test -p kt-transport -- --ignored write_fuzz_seeds` refreshes them.
#[cfg(test)]
mod fuzz_seeds {
    use super::*;
    use crate::wire::call;

    #[test]
    #[ignore = "writes files: run by hand to refresh fuzz/corpus/frame_decoder"]
    fn write_fuzz_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/frame_decoder");
        for (n, frame) in every_kind().into_iter().enumerate() {
            let mut buf = BytesMut::new();
            encode_frame(&frame, &mut buf).expect("encode");
            std::fs::write(format!("{dir}/frame-{n}"), &buf).expect("write seed");
        }
        let mut calls = BytesMut::new();
        encode_frame(
            &Frame::Open {
                version: PROTOCOL_VERSION,
                actor_id: 7,
                host: None,
            },
            &mut calls,
        )
        .expect("open");
        call::write_method(&mut calls, 0, "add").expect("method");
        call::write_call(&mut calls, 1, 0, &[0x91, 0x05]).expect("call");
        call::write_release(&mut calls);
        call::write_kill(&mut calls);
        std::fs::write(format!("{dir}/call-stream"), &calls).expect("write seed");
        let mut replies = BytesMut::new();
        call::write_reply(&mut replies, 1, &[0x81, 0xa2, b'O', b'k', 0x06]).expect("reply");
        call::write_refused(&mut replies, &Error::NoRuntime).expect("refused");
        std::fs::write(format!("{dir}/reply-stream"), &replies).expect("write seed");
    }
}
