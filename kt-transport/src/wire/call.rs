//! The frames of a call stream after its `Open`: a fixed binary header, then the bytes of
//! the arguments or of the reply exactly as the codec wrote them.
//!
//! A call is the hot path: it carries no MessagePack frame around its MessagePack
//! arguments, no method name (a method is named once per stream, then referred to by
//! index) and nothing to allocate on decode — a decoded call's arguments and a decoded
//! reply's payload are views of the bytes read from the stream.
//!
//! Every frame is `[u32 BE length of what follows][u8 kind][fields][bytes]`:
//!
//! | kind | direction | fields | bytes |
//! |---|---|---|---|
//! | `0x01` Method | caller → node | `u16` index | the method's name (UTF-8) |
//! | `0x02` Call | caller → node | `u64` call id, `u16` method index | the MessagePack arguments tuple |
//! | `0x03` Release | caller → node | | |
//! | `0x04` Kill | caller → node | | |
//! | `0x11` Reply | node → caller | `u64` call id | the encoded reply: `0` and the MessagePack value, or `1` and the MessagePack [`Error`] |
//! | `0x12` Refused | node → caller | | the MessagePack [`Error`] every pending call fails with |
//!
//! The length prefix is cut by the same [`FrameCodec`] as
//! every other frame, so the limits and the memory bound hold here too.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kt_core::backend::KeptReply;
use kt_core::{Error, codec};
use tokio_util::codec::Decoder;

use super::frame::{FRAME_OVERHEAD, FrameCodec, max_message_bytes};

/// The most distinct methods one call stream may name (a bound on what a peer can make
/// the node remember).
pub const MAX_METHODS_PER_STREAM: usize = 4096;

/// The longest method name, in bytes.
pub const MAX_METHOD_NAME: usize = 256;

const METHOD: u8 = 0x01;
const CALL: u8 = 0x02;
const RELEASE: u8 = 0x03;
const KILL: u8 = 0x04;
const REPLY: u8 = 0x11;
const REFUSED: u8 = 0x12;

/// The bytes of a call's header before its arguments: length, kind, call id, method.
pub const CALL_HEADER: usize = 4 + 1 + 8 + 2;

/// The bytes of a reply's header before its payload: length, kind, call id.
pub const REPLY_HEADER: usize = 4 + 1 + 8;

/// A frame a caller sends on a call stream.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerFrame {
    /// From now on, method `index` of this stream is `name`.
    Method {
        /// The index calls use.
        index: u16,
        /// The method's name.
        name: String,
    },
    /// One call.
    Call {
        /// Unique among this stream's pending calls.
        call_id: u64,
        /// The index a `Method` frame of this stream defined.
        method: u16,
        /// The MessagePack encoding of the arguments tuple.
        args: Bytes,
    },
    /// The caller's last owning handle is gone (rule L1): sent behind every call.
    Release,
    /// Kill the actor now.
    Kill,
}

/// A frame a node sends back on a call stream.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeFrame {
    /// The encoded reply of one call (`kt_core::codec::with_encoded_reply`).
    Reply {
        /// The call this answers.
        call_id: u64,
        /// The encoded result.
        payload: KeptReply,
    },
    /// The stream cannot be served (unknown actor, malformed frame, ...): every call
    /// pending on it fails with this error.
    Refused {
        /// Why.
        error: Error,
    },
}

fn too_large(size: usize) -> Error {
    Error::MessageTooLarge {
        size,
        limit: max_message_bytes(),
    }
}

/// Writes the length prefix and kind of a frame whose fields and bytes take `rest` bytes.
fn put_head(out: &mut BytesMut, kind: u8, rest: usize) -> Result<(), Error> {
    let length = 1 + rest;
    if length > max_message_bytes().saturating_add(FRAME_OVERHEAD) {
        return Err(too_large(rest));
    }
    let length = u32::try_from(length).map_err(|_| too_large(rest))?;
    out.reserve(4 + length as usize);
    out.put_u32(length);
    out.put_u8(kind);
    Ok(())
}

/// Appends a call: its header, then `args` as they are.
pub fn write_call(out: &mut BytesMut, call_id: u64, method: u16, args: &[u8]) -> Result<(), Error> {
    if args.len() > max_message_bytes() {
        return Err(too_large(args.len()));
    }
    put_head(out, CALL, 8 + 2 + args.len())?;
    out.put_u64(call_id);
    out.put_u16(method);
    out.extend_from_slice(args);
    Ok(())
}

/// Appends the definition of method `index` as `name`.
pub fn write_method(out: &mut BytesMut, index: u16, name: &str) -> Result<(), Error> {
    if name.len() > MAX_METHOD_NAME {
        return Err(Error::Protocol {
            message: format!(
                "method name of {} bytes is over the {MAX_METHOD_NAME}-byte limit",
                name.len()
            ),
        });
    }
    put_head(out, METHOD, 2 + name.len())?;
    out.put_u16(index);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Appends a `Release`.
pub fn write_release(out: &mut BytesMut) {
    out.put_u32(1);
    out.put_u8(RELEASE);
}

/// Appends a `Kill`.
pub fn write_kill(out: &mut BytesMut) {
    out.put_u32(1);
    out.put_u8(KILL);
}

/// Appends a reply: its header, then `payload` as it is.
pub fn write_reply(out: &mut BytesMut, call_id: u64, payload: &[u8]) -> Result<(), Error> {
    if payload.len() > max_message_bytes() {
        return Err(too_large(payload.len()));
    }
    put_head(out, REPLY, 8 + payload.len())?;
    out.put_u64(call_id);
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends a refusal.
pub fn write_refused(out: &mut BytesMut, error: &Error) -> Result<(), Error> {
    let body = codec::encode(error, "a refusal")?;
    put_head(out, REFUSED, body.len())?;
    out.extend_from_slice(&body);
    Ok(())
}

fn malformed(what: &str) -> Error {
    Error::Protocol {
        message: format!("malformed call-stream frame: {what}"),
    }
}

/// Takes the kind byte off a frame body.
fn kind(body: &mut BytesMut) -> Result<u8, Error> {
    if body.is_empty() {
        return Err(malformed("empty frame"));
    }
    Ok(body.get_u8())
}

fn take_u64(body: &mut BytesMut, what: &str) -> Result<u64, Error> {
    body.try_get_u64().map_err(|_| malformed(what))
}

fn take_u16(body: &mut BytesMut, what: &str) -> Result<u16, Error> {
    body.try_get_u16().map_err(|_| malformed(what))
}

/// Decodes one frame body (without its length prefix) that a caller sent.
pub fn decode_caller_frame(mut body: BytesMut) -> Result<CallerFrame, Error> {
    match kind(&mut body)? {
        CALL => {
            let call_id = take_u64(&mut body, "a call without its id")?;
            let method = take_u16(&mut body, "a call without its method")?;
            Ok(CallerFrame::Call {
                call_id,
                method,
                args: body.freeze(),
            })
        }
        METHOD => {
            let index = take_u16(&mut body, "a method without its index")?;
            if body.len() > MAX_METHOD_NAME {
                return Err(malformed("a method name over the length limit"));
            }
            let name = String::from_utf8(body.to_vec())
                .map_err(|_| malformed("a method name that is not UTF-8"))?;
            Ok(CallerFrame::Method { index, name })
        }
        RELEASE if body.is_empty() => Ok(CallerFrame::Release),
        KILL if body.is_empty() => Ok(CallerFrame::Kill),
        RELEASE | KILL => Err(malformed("bytes after a Release or Kill")),
        other => Err(malformed(&format!(
            "unknown kind {other:#04x} from a caller"
        ))),
    }
}

/// Decodes one frame body (without its length prefix) that a node sent back.
pub fn decode_node_frame(mut body: BytesMut) -> Result<NodeFrame, Error> {
    match kind(&mut body)? {
        REPLY => {
            let call_id = take_u64(&mut body, "a reply without its call id")?;
            Ok(NodeFrame::Reply {
                call_id,
                payload: KeptReply::from_bytes(body.freeze()),
            })
        }
        REFUSED => {
            let error = codec::decode::<Error>(&body, "a refusal")?;
            Ok(NodeFrame::Refused { error })
        }
        other => Err(malformed(&format!("unknown kind {other:#04x} from a node"))),
    }
}

/// Cuts the frames a node sends on a call stream out of the bytes read, decoded.
///
/// A small reply, the common case, is read where it lies in the read buffer and copied
/// out inline ([`KeptReply`]): no view of the buffer is cut for it, so its reference
/// count is not shared between the reading thread and the caller's that drops it.
/// Anything else is cut by the [`FrameCodec`], with its limits.
pub struct NodeFrameCodec {
    frames: FrameCodec,
}

impl NodeFrameCodec {
    /// Frames of at most `limit` bytes of payload.
    pub fn new(limit: usize) -> Self {
        NodeFrameCodec {
            frames: super::frame::codec(limit),
        }
    }
}

impl Decoder for NodeFrameCodec {
    /// A frame, or why its body is malformed.
    type Item = Result<NodeFrame, Error>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, std::io::Error> {
        if let Some(reply) = small_reply(src) {
            return Ok(Some(Ok(reply)));
        }
        Ok(self.frames.decode(src)?.map(decode_node_frame))
    }
}

/// Takes a whole small reply off the front of `src`, if that is what it starts with.
fn small_reply(src: &mut BytesMut) -> Option<NodeFrame> {
    let header = src.first_chunk::<REPLY_HEADER>()?;
    let (length, rest) = header.split_first_chunk::<4>()?;
    let whole = 4 + u32::from_be_bytes(*length) as usize;
    let (kind, call_id) = rest.split_first()?;
    let payload = src.get(REPLY_HEADER..whole)?;
    if *kind != REPLY || payload.len() > KeptReply::INLINE {
        return None;
    }
    let call_id = u64::from_be_bytes(*call_id.first_chunk::<8>()?);
    let payload = KeptReply::copy_from(payload);
    src.advance(whole);
    Some(NodeFrame::Reply { call_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::codec as frame_codec;
    use tokio_util::codec::Decoder;

    fn bodies(mut wire: BytesMut) -> Vec<BytesMut> {
        let mut decoder = frame_codec(max_message_bytes());
        let mut out = Vec::new();
        while let Some(body) = decoder.decode(&mut wire).expect("whole frames") {
            out.push(body);
        }
        assert!(wire.is_empty(), "bytes left over");
        out
    }

    #[test]
    fn every_caller_frame_round_trips() {
        let mut wire = BytesMut::new();
        write_method(&mut wire, 3, "add").expect("method");
        write_call(&mut wire, 9, 3, &[0x91, 0x05]).expect("call");
        write_call(&mut wire, 10, 3, &[]).expect("empty args");
        write_release(&mut wire);
        write_kill(&mut wire);
        let frames: Vec<_> = bodies(wire)
            .into_iter()
            .map(|body| decode_caller_frame(body).expect("frame"))
            .collect();
        assert_eq!(
            frames,
            [
                CallerFrame::Method {
                    index: 3,
                    name: "add".into()
                },
                CallerFrame::Call {
                    call_id: 9,
                    method: 3,
                    args: Bytes::from_static(&[0x91, 0x05])
                },
                CallerFrame::Call {
                    call_id: 10,
                    method: 3,
                    args: Bytes::new()
                },
                CallerFrame::Release,
                CallerFrame::Kill,
            ]
        );
    }

    #[test]
    fn the_node_frame_codec_reads_small_and_large_replies_as_they_arrive() {
        let large = vec![3u8; KeptReply::INLINE + 1];
        let edge = vec![4u8; KeptReply::INLINE];
        let refusal = Error::NoRuntime;
        let mut wire = BytesMut::new();
        write_reply(&mut wire, 1, &[0, 5]).expect("small");
        write_reply(&mut wire, 2, &large).expect("large");
        write_reply(&mut wire, 3, &edge).expect("edge");
        write_reply(&mut wire, 4, &[]).expect("empty");
        write_refused(&mut wire, &refusal).expect("refused");
        let expected = [
            NodeFrame::Reply {
                call_id: 1,
                payload: KeptReply::copy_from(&[0, 5]),
            },
            NodeFrame::Reply {
                call_id: 2,
                payload: KeptReply::copy_from(&large),
            },
            NodeFrame::Reply {
                call_id: 3,
                payload: KeptReply::copy_from(&edge),
            },
            NodeFrame::Reply {
                call_id: 4,
                payload: KeptReply::copy_from(&[]),
            },
            NodeFrame::Refused { error: refusal },
        ];
        // One byte at a time, as a stream may deliver them: no frame is cut early.
        let mut codec = NodeFrameCodec::new(max_message_bytes());
        let mut src = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            src.put_u8(*byte);
            while let Some(frame) = codec.decode(&mut src).expect("within limits") {
                frames.push(frame.expect("well formed"));
            }
        }
        assert_eq!(frames, expected);
        assert!(src.is_empty());
        assert!(matches!(
            &frames[0],
            NodeFrame::Reply {
                payload: KeptReply::Inline { .. },
                ..
            }
        ));
        assert!(matches!(
            &frames[1],
            NodeFrame::Reply {
                payload: KeptReply::Shared(_),
                ..
            }
        ));
    }

    #[test]
    fn the_node_frame_codec_keeps_the_frame_limits() {
        let mut codec = NodeFrameCodec::new(16);
        let mut src = BytesMut::new();
        src.put_u32(1 << 20);
        src.put_u8(REPLY);
        src.put_u64(1);
        assert!(codec.decode(&mut src).is_err(), "announced past the limit");
        let mut codec = NodeFrameCodec::new(16);
        let mut src = BytesMut::from(&[0, 0, 0, 1, 0x7f][..]);
        let frame = codec.decode(&mut src).expect("cut").expect("whole");
        assert!(frame.is_err(), "an unknown kind is malformed");
    }

    #[test]
    fn every_node_frame_round_trips() {
        let mut wire = BytesMut::new();
        write_reply(&mut wire, 7, b"\x81\xa2Ok\x05").expect("reply");
        let refusal = Error::Protocol {
            message: "no".into(),
        };
        write_refused(&mut wire, &refusal).expect("refused");
        let frames: Vec<_> = bodies(wire)
            .into_iter()
            .map(|body| decode_node_frame(body).expect("frame"))
            .collect();
        assert_eq!(
            frames,
            [
                NodeFrame::Reply {
                    call_id: 7,
                    payload: KeptReply::copy_from(b"\x81\xa2Ok\x05")
                },
                NodeFrame::Refused { error: refusal },
            ]
        );
    }

    #[test]
    fn a_call_header_is_fifteen_bytes_and_its_arguments_follow_as_they_are() {
        let mut wire = BytesMut::new();
        write_call(&mut wire, 1, 2, b"args").expect("call");
        assert_eq!(wire.len(), CALL_HEADER + 4);
        assert_eq!(&wire[CALL_HEADER..], b"args");
        let mut reply = BytesMut::new();
        write_reply(&mut reply, 1, b"ok").expect("reply");
        assert_eq!(reply.len(), REPLY_HEADER + 2);
    }

    #[test]
    fn truncated_unknown_and_trailing_bytes_are_protocol_errors() {
        let cases: [&[u8]; 7] = [
            &[],
            &[CALL, 0, 0, 0],
            &[CALL, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[METHOD, 0],
            &[METHOD, 0, 0, 0xff, 0xfe],
            &[RELEASE, 1],
            &[0x7f],
        ];
        for case in cases {
            let result = decode_caller_frame(BytesMut::from(case));
            assert!(
                matches!(result, Err(Error::Protocol { .. })),
                "{case:?} gave {result:?}"
            );
        }
        for case in [&[][..], &[REPLY, 1, 2], &[REFUSED, 0xc1], &[CALL]] {
            let result = decode_node_frame(BytesMut::from(case));
            assert!(
                matches!(
                    result,
                    Err(Error::Protocol { .. }) | Err(Error::Decode { .. })
                ),
                "{case:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn long_method_names_are_refused_both_ways() {
        let name = "m".repeat(MAX_METHOD_NAME + 1);
        assert!(write_method(&mut BytesMut::new(), 0, &name).is_err());
        let mut body = BytesMut::new();
        body.put_u8(METHOD);
        body.put_u16(0);
        body.extend_from_slice(name.as_bytes());
        assert!(decode_caller_frame(body).is_err());
    }
}
