//! The wire format: length-delimited MessagePack frames on QUIC streams.
//!
//! Every frame is a 4-byte big-endian length followed by the MessagePack encoding of a
//! [`Frame`]. The first frame of every stream says what the stream is for and carries
//! the protocol version. Frames longer than the message limit are refused with
//! [`Error::MessageTooLarge`] before they are sent, and a receiver never buffers more than
//! the limit for one frame — and never reserves memory for bytes that have not arrived:
//! a frame's announced length reserves nothing ([`FrameCodec`]), so a peer announcing
//! huge frames on many streams costs only what it actually sends.

use bytes::{Bytes, BytesMut};
use kt_core::handle_wire::HandleAddress;
use kt_core::{Error, codec};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The version of this wire protocol; peers of another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The default limit on one message, in bytes (override with `KT_MAX_MESSAGE_BYTES`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// Room for a frame's own fields around its payload.
const FRAME_OVERHEAD: usize = 4096;

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
    },
    /// Caller → node: one call.
    Call {
        /// Unique among the caller's pending calls on this connection.
        call_id: u64,
        /// The method name.
        method: String,
        /// The MessagePack encoding of the arguments tuple.
        payload: Bytes,
    },
    /// Node → caller: the encoded `Result<T, Error>` of a call.
    Reply {
        /// The call this answers.
        call_id: u64,
        /// The encoded result.
        payload: Bytes,
    },
    /// Node → caller, the only frame of a reply stream of its own: the next `len` bytes
    /// of the stream, unframed, are the encoded `Result<T, Error>` of the call. Large
    /// replies travel this way so that they hold up no other reply, and so that neither
    /// side copies them into or out of a frame.
    ReplyStream {
        /// The call this answers.
        call_id: u64,
        /// How many bytes follow.
        len: u64,
    },
    /// Node → caller: the stream cannot be served (unknown actor, malformed frame, ...).
    /// Every call pending on the stream fails with this error.
    Refused {
        /// Why.
        error: Error,
    },
    /// Driver → worker on the control stream: the driver's last owning handle is gone.
    Release,
    /// Caller → node on a call stream: kill the actor now.
    Kill,
    /// Worker → driver on the control stream: the hosted actor stopped, and why; the
    /// worker exits next.
    Gone {
        /// Why the actor stopped.
        cause: kt_core::DeathCause,
    },
}

/// How much a frame's buffer grows at a time while its bytes arrive.
const GROWTH: usize = 64 * 1024;

/// The decoder of length-delimited frames of at most `limit` payload bytes (plus room
/// for the frame's own fields).
pub fn codec(limit: usize) -> FrameCodec {
    FrameCodec {
        max_frame: limit.saturating_add(FRAME_OVERHEAD),
    }
}

/// Cuts 4-byte big-endian length-prefixed frames out of a byte stream.
///
/// Unlike tokio-util's `LengthDelimitedCodec`, which reserves a frame's whole announced
/// length as soon as it reads the prefix, it lets the buffer grow only as the frame's
/// bytes arrive (at most [`GROWTH`] ahead of them): an authenticated peer that sends
/// 4-byte prefixes announcing 128 MiB on hundreds of streams reserves nothing, where it
/// used to make a worker reserve tens of gigabytes of address space and abort.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
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
            // Room for what is likely to come next, never for the whole announcement.
            let missing = whole - src.len();
            src.reserve(missing.min(GROWTH));
            return Ok(None);
        }
        let mut frame = src.split_to(whole);
        let _ = frame.split_to(4);
        Ok(Some(frame))
    }
}

/// The length-delimited encoder for frames of at most `limit` payload bytes.
fn encoder(limit: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(limit.saturating_add(FRAME_OVERHEAD))
        .new_codec()
}

/// Appends `frame`, length-prefixed, to `out`.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) -> Result<(), Error> {
    let body = codec::encode(frame, "a frame")?;
    let limit = max_message_bytes();
    if body.len() > limit.saturating_add(FRAME_OVERHEAD) {
        return Err(Error::MessageTooLarge {
            size: body.len(),
            limit,
        });
    }
    encoder(limit)
        .encode(Bytes::from(body), out)
        .map_err(|e| Error::Protocol {
            message: e.to_string(),
        })
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
    fn every_frame_round_trips() {
        round_trip(Frame::Open {
            version: PROTOCOL_VERSION,
            actor_id: 7,
        });
        round_trip(Frame::Call {
            call_id: 1,
            method: "add".into(),
            payload: Bytes::from_static(&[0x91, 0x05]),
        });
        round_trip(Frame::Reply {
            call_id: 1,
            payload: Bytes::from_static(b"\x81\xa2Ok\x05"),
        });
        round_trip(Frame::ReplyStream {
            call_id: 2,
            len: 100 << 20,
        });
        round_trip(Frame::Refused {
            error: Error::Protocol {
                message: "x".into(),
            },
        });
        round_trip(Frame::Release);
        round_trip(Frame::Kill);
    }

    #[test]
    fn garbage_and_truncated_bodies_are_protocol_errors() {
        assert!(matches!(
            decode_frame(&[0xc1, 0x00, 0xff]),
            Err(Error::Protocol { .. })
        ));
        let mut buf = BytesMut::new();
        encode_frame(
            &Frame::Call {
                call_id: 9,
                method: "m".into(),
                payload: Bytes::new(),
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
            let frame = Frame::Reply {
                call_id: n as u64,
                payload: Bytes::from(vec![9u8; n]),
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
        let ids: Vec<u64> = out
            .iter()
            .map(|f| match f {
                Frame::Reply { call_id, .. } => *call_id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [0, 1, 70_000, 5]);
    }

    #[test]
    fn oversized_frames_are_refused_by_the_decoder() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&u32::MAX.to_be_bytes());
        buf.extend_from_slice(&[0u8; 16]);
        assert!(codec(1024).decode(&mut buf).is_err());
    }
}

/// Writes the fuzzing corpus seeds (one encoded frame of each kind) into `dir`.
/// `cargo test -p kt-transport -- --ignored write_fuzz_seeds` refreshes them.
#[cfg(test)]
mod fuzz_seeds {
    use super::*;

    #[test]
    #[ignore = "writes files: run by hand to refresh fuzz/corpus/frame_decoder"]
    fn write_fuzz_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/frame_decoder");
        let frames = [
            (
                "open",
                Frame::Open {
                    version: PROTOCOL_VERSION,
                    actor_id: 7,
                },
            ),
            (
                "call",
                Frame::Call {
                    call_id: 1,
                    method: "add".into(),
                    payload: Bytes::from_static(&[0x91, 0x05]),
                },
            ),
            (
                "reply",
                Frame::Reply {
                    call_id: 1,
                    payload: Bytes::from_static(&[0x81, 0xa2, b'O', b'k', 0x06]),
                },
            ),
            (
                "reply-stream",
                Frame::ReplyStream {
                    call_id: 2,
                    len: 1 << 20,
                },
            ),
            (
                "refused",
                Frame::Refused {
                    error: Error::Protocol {
                        message: "bad".into(),
                    },
                },
            ),
            ("release", Frame::Release),
            ("kill", Frame::Kill),
            (
                "gone",
                Frame::Gone {
                    cause: kt_core::DeathCause::Killed,
                },
            ),
        ];
        for (name, frame) in frames {
            let mut buf = BytesMut::new();
            encode_frame(&frame, &mut buf).expect("encode");
            std::fs::write(format!("{dir}/{name}"), &buf).expect("write seed");
        }
    }
}
