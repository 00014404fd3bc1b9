//! The byte form of arguments and replies: MessagePack through rmp-serde.
//!
//! Every value that crosses an actor boundary in encoded form (a remote call, a
//! loopback call, a group broadcast, a spawn by type name) goes through these
//! functions, so that the wire format and its error messages live in one place. A
//! reply is one byte (0: a value follows, 1: an [`Error`] follows) and then that value
//! in MessagePack.
//! Structs are encoded as maps (field names included) so that a reply decodes
//! correctly even when field order changes between builds.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub mod attachments;
pub mod raw;

use attachments::Attachment;

/// Encodes `value` to MessagePack; `what` names the value in the error. It is formatted
/// only if encoding fails, so hot paths can pass `format_args!` without allocating.
pub fn encode<T: Serialize + ?Sized>(value: &T, what: impl std::fmt::Display) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Encodes `value` to MessagePack in one allocation of exactly its size: the value is
/// written into a scratch buffer this thread keeps, then copied out once. The hot paths
/// (call arguments, replies) use it, so a call's encoding never regrows a buffer.
pub fn encode_bytes<T: Serialize + ?Sized>(
    value: &T,
    what: impl std::fmt::Display,
) -> Result<bytes::Bytes> {
    with_encoded(value, what, bytes::Bytes::copy_from_slice)
}

/// Encodes `value` into a scratch buffer this thread keeps and hands the bytes to `use_`:
/// a caller that copies them somewhere anyway (a transport's stream buffer) needs no
/// allocation of their own.
pub fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    what: impl std::fmt::Display,
    use_: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    with_scratch(|buf| {
        write_value(buf, value, what)?;
        Ok(use_(buf))
    })
}

/// Runs `f` with this thread's (cleared) scratch buffer.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// Scratch buffers that grew past this are given back rather than kept.
    const KEEP: usize = 64 * 1024;
    SCRATCH.with(|scratch| {
        // Code that encodes while the scratch is in use (a `Serialize` impl, or what
        // `use_` runs) gets a buffer of its own.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return f(&mut Vec::new());
        };
        buf.clear();
        let out = f(&mut buf);
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        out
    })
}

/// Appends the MessagePack encoding of `value` to `buf`.
fn write_value<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
    what: impl std::fmt::Display,
) -> Result<()> {
    rmp_serde::encode::write_named(buf, value).map_err(|e| Error::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// The first byte of an encoded reply: the method's value follows.
const REPLY_OK: u8 = 0;
/// The first byte of an encoded reply: an [`Error`] follows.
const REPLY_ERR: u8 = 1;

/// Encodes a method's result as a reply: one byte saying which of value or error
/// follows, then that one in MessagePack. (A MessagePack `Result` would name its variant
/// as a string, which every reply would pay to write and to compare.) A value that
/// cannot be encoded comes out as an [`Error::Encode`] reply; `use_` gets the bytes.
pub fn with_encoded_reply<T: Serialize, R>(result: &Result<T>, use_: impl FnOnce(&[u8]) -> R) -> R {
    with_scratch(|buf| {
        write_reply(buf, result.as_ref());
        use_(buf)
    })
}

/// Encodes a reply from a view of a method's result (`result` may hold a borrowed form
/// of the value that encodes as the value the caller decodes: see [`raw`]).
/// `attaching`: whether the receiver takes attachments — then large buffers in the value
/// ([`attachments`]) are handed to `use_` beside the encoded bytes rather than copied
/// into them; otherwise, and for a value that cannot be encoded (an [`Error::Encode`]
/// reply), `use_` gets none.
pub fn with_encoded_reply_as<W: Serialize, R>(
    result: std::result::Result<W, &Error>,
    attaching: bool,
    use_: impl FnOnce(&[u8], Vec<Attachment>) -> R,
) -> R {
    with_scratch(|buf| {
        if !attaching {
            write_reply(buf, result);
            return use_(buf, Vec::new());
        }
        let (encoded, attachments) = attachments::while_attaching(|| write_reply(buf, result));
        match encoded {
            true => use_(buf, attachments),
            false => use_(buf, Vec::new()),
        }
    })
}

/// Writes the reply of `result` into `buf`; `false` when the value could not be encoded
/// and an [`Error::Encode`] reply was written instead.
fn write_reply<W: Serialize>(buf: &mut Vec<u8>, result: std::result::Result<W, &Error>) -> bool {
    let written = match result {
        Ok(value) => {
            buf.push(REPLY_OK);
            write_value(buf, &value, "a reply")
        }
        Err(error) => {
            write_error(buf, error);
            Ok(())
        }
    };
    match written {
        Ok(()) => true,
        Err(error) => {
            buf.clear();
            write_error(buf, &error);
            false
        }
    }
}

/// Encodes a method's result as a reply (see [`with_encoded_reply`]).
pub fn encode_reply<T: Serialize>(result: &Result<T>) -> bytes::Bytes {
    with_encoded_reply(result, bytes::Bytes::copy_from_slice)
}

/// Encodes the error reply `Err(error)`: the same bytes for a method of any type, so a
/// backend can answer any call with it (unknown method, bad arguments, dead actor).
pub fn encode_error(error: &Error) -> bytes::Bytes {
    with_scratch(|buf| {
        write_error(buf, error);
        bytes::Bytes::copy_from_slice(buf)
    })
}

/// Appends an error reply to `buf`. [`Error`] holds only strings, numbers and lists of
/// them, so its encoding cannot fail; if it ever did, the bare tag decodes as a clear
/// [`Error::Decode`] at the caller.
fn write_error(buf: &mut Vec<u8>, error: &Error) {
    buf.push(REPLY_ERR);
    let _ = rmp_serde::encode::write_named(buf, error);
}

/// Decodes a reply made by [`with_encoded_reply`]: the method's value, or the error it
/// carries. `what` names the reply in a decoding error.
pub fn decode_reply<T: DeserializeOwned>(bytes: &[u8], what: impl std::fmt::Display) -> Result<T> {
    match bytes.split_first() {
        Some((&REPLY_OK, value)) => decode(value, what),
        Some((&REPLY_ERR, error)) => Err(decode::<Error>(error, what)?),
        _ => Err(Error::Decode {
            what: what.to_string(),
            message: format!(
                "a reply starts with 0 (a value) or 1 (an error), not {:?}",
                bytes.first()
            ),
        }),
    }
}

/// Decodes a reply that came in as `bytes`, with `attachments` if it had any
/// ([`with_encoded_reply_as`]): bulk buffers in it (the transport's `Blob`) become views
/// of `bytes` or of their attachment, not copies.
pub fn decode_reply_of<T: DeserializeOwned>(
    bytes: &bytes::Bytes,
    attachments: Option<&Arc<[Attachment]>>,
    what: impl std::fmt::Display,
) -> Result<T> {
    attachments::while_decoding(bytes, attachments, || decode_reply(bytes, what))
}

/// The reply `encoded` with its attachments inline (see [`attachments::inline`]), for a
/// receiver that takes none; a reply that does not parse becomes an [`Error::Decode`]
/// reply.
pub fn inline_attachments(encoded: &[u8], attachments: &Arc<[Attachment]>) -> bytes::Bytes {
    let Some((&tag, value)) = encoded.split_first() else {
        return bytes::Bytes::copy_from_slice(encoded);
    };
    let extra: usize = attachments.iter().map(|a| a.bytes.len() + 5).sum();
    let mut out = Vec::with_capacity(encoded.len() + extra);
    out.push(tag);
    match attachments::inline(value, attachments, &mut out) {
        Ok(()) => bytes::Bytes::from(out),
        Err(message) => encode_error(&Error::Decode {
            what: "a reply passed on".into(),
            message,
        }),
    }
}

/// The error an encoded reply carries, if it is an error reply that decodes.
pub fn reply_error(bytes: &[u8]) -> Option<Error> {
    match bytes.split_first() {
        Some((&REPLY_ERR, error)) => decode(error, "an error reply").ok(),
        _ => None,
    }
}

/// Decodes a MessagePack value; `what` names the value in the error (formatted only on
/// failure, like [`encode`]'s).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: impl std::fmt::Display) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Point {
        x: i32,
        y: String,
    }

    #[test]
    fn values_round_trip() {
        let p = Point {
            x: -3,
            y: "up".into(),
        };
        let back: Point =
            decode(&encode(&p, "a point").expect("encode"), "a point").expect("decode");
        assert_eq!(back, p);
    }

    #[test]
    fn wrong_types_are_decode_errors_naming_the_value() {
        let bytes = encode(&("not a number",), "args").expect("encode");
        let err = decode::<(u64,)>(&bytes, "arguments of `add`").expect_err("must fail");
        match err {
            Error::Decode { what, .. } => assert_eq!(what, "arguments of `add`"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exact_size_encoding_matches_the_plain_encoding() {
        let p = Point {
            x: 7,
            y: "right".into(),
        };
        let plain = encode(&p, "a point").expect("encode");
        let exact = encode_bytes(&p, "a point").expect("encode");
        assert_eq!(&exact[..], &plain[..]);
        let big = vec![1u8; 200_000];
        let exact = encode_bytes(&big, "bytes").expect("encode");
        assert_eq!(&exact[..], &encode(&big, "bytes").expect("encode")[..]);
    }

    #[test]
    fn replies_carry_the_value_or_the_error() {
        let ok = encode_reply(&Ok(Point {
            x: 1,
            y: "a".into(),
        }));
        assert_eq!(ok[0], REPLY_OK);
        let back: Point = decode_reply(&ok, "a reply").expect("value");
        assert_eq!(back.y, "a");
        assert!(reply_error(&ok).is_none());

        let refused = Error::Overloaded {
            actor: crate::ActorLabel {
                id: 7,
                type_name: "T".into(),
                name: None,
            },
            limit: 3,
        };
        let err = encode_reply::<Point>(&Err(refused));
        assert_eq!(err[0], REPLY_ERR);
        assert!(matches!(
            decode_reply::<Point>(&err, "a reply"),
            Err(Error::Overloaded { limit: 3, .. })
        ));
        assert!(matches!(reply_error(&err), Some(Error::Overloaded { .. })));
    }

    #[test]
    fn a_value_that_fails_to_encode_replies_with_the_encoding_error() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("not today"))
            }
        }
        let reply = encode_reply(&Ok(Refuses));
        match decode_reply::<u8>(&reply, "a reply") {
            Err(Error::Encode { what, message }) => {
                assert_eq!(what, "a reply");
                assert!(message.contains("not today"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_replies_are_decode_errors() {
        for bytes in [&[][..], &[2, 0], &[REPLY_OK, 0xc1], &[REPLY_ERR]] {
            assert!(
                matches!(
                    decode_reply::<u8>(bytes, "the reply"),
                    Err(Error::Decode { .. })
                ),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(decode::<Point>(&[0xc1, 0xff, 0x00], "garbage").is_err());
        assert!(decode::<Point>(&[], "nothing").is_err());
    }
}
