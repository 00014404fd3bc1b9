//! The byte form of arguments and replies: MessagePack through rmp-serde.
//!
//! Every value that crosses an actor boundary in encoded form (a remote call, a
//! loopback call, a group broadcast, a spawn by type name) goes through these two
//! functions, so that the wire format and its error messages live in one place.
//! Structs are encoded as maps (field names included) so that a reply decodes
//! correctly even when field order changes between builds.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

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
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// Scratch buffers that grew past this are given back rather than kept.
    const KEEP: usize = 64 * 1024;
    SCRATCH.with(|scratch| {
        // A `Serialize` impl that itself encodes (re-entrantly) gets a buffer of its own.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return encode(value, what).map(bytes::Bytes::from);
        };
        buf.clear();
        let written = rmp_serde::encode::write_named(&mut *buf, value).map_err(|e| Error::Encode {
            what: what.to_string(),
            message: e.to_string(),
        });
        let out = written.map(|()| bytes::Bytes::copy_from_slice(&buf));
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        out
    })
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
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(decode::<Point>(&[0xc1, 0xff, 0x00], "garbage").is_err());
        assert!(decode::<Point>(&[], "nothing").is_err());
    }
}
