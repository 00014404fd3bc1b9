//! [`Blob`]: bytes that cross an actor boundary as bytes, and on one host without a copy.
//!
//! MessagePack encodes a `Vec<u8>` as a sequence of integers (100 MB took 1.1 s to
//! reply with); a `Blob` is one `bin` value instead, and more:
//!
//! - A `Blob` decoded from a reply is a view of the bytes the reply came in, not a copy.
//! - Returned to a caller on the same host (the same boot and network namespace, the
//!   same user), a `Blob` of 64 KiB or more does not travel in the reply at all: it is
//!   handed over as a sealed memfd over a Unix socket, and the caller maps it read-only
//!   (it checks the seals itself). A `Blob` made by [`Blob::in_shared_memory`] (or
//!   one that came that way) is that memfd already, so nothing is copied on either side;
//!   any other is copied into one first.
//! - To a caller on another host it travels on a QUIC stream of its own, as every large
//!   reply does, and is received straight into the buffer it is then a view of.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use kt_core::Error;
pub use kt_core::codec::attachments::ATTACH_MIN_BYTES;
use kt_core::codec::attachments::{self, Attachment};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::sealed_memory::SealedMemory;

/// Bytes for arguments and replies: encoded as one MessagePack `bin`, decoded as a view
/// of what was received, and handed over as sealed shared memory to a caller on the
/// same host (see the [module](self)).
///
/// ```
/// use kt_transport::wire::blob::Blob;
///
/// let weights = Blob::from(vec![1u8, 2, 3]);
/// assert_eq!(&weights[..], &[1, 2, 3]);
///
/// // Written in place in shared memory: a caller on this host maps these very pages.
/// let shared = Blob::in_shared_memory(4096, |buf| buf.fill(7)).expect("memfd");
/// assert!(shared.is_shared() && shared.iter().all(|b| *b == 7));
/// ```
#[derive(Clone, Default)]
pub struct Blob {
    bytes: Bytes,
    /// The sealed memfd `bytes` are the whole of, when they are one.
    memory: Option<Arc<SealedMemory>>,
}

impl Blob {
    /// An empty blob.
    pub fn new() -> Self {
        Blob::default()
    }

    /// A blob of `len` bytes written by `fill` (given them zeroed) into a sealed memfd,
    /// which a caller on the same host maps without either side copying.
    pub fn in_shared_memory(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<Blob, Error> {
        let memory = SealedMemory::create_with(len, fill)?;
        Ok(Blob::from_sealed(Arc::new(memory)))
    }

    /// A blob of the whole of `memory`.
    pub fn from_sealed(memory: Arc<SealedMemory>) -> Blob {
        Blob {
            bytes: memory.clone().into_bytes(),
            memory: Some(memory),
        }
    }

    /// Whether the bytes are a sealed memfd that can be handed to another process as it is.
    pub fn is_shared(&self) -> bool {
        self.memory.is_some()
    }

    /// The sealed memfd the bytes are, if they are one.
    pub fn sealed_memory(&self) -> Option<&Arc<SealedMemory>> {
        self.memory.as_ref()
    }

    /// The bytes, shared (no copy).
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob::from(Bytes::from(bytes))
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Self {
        Blob {
            bytes,
            memory: None,
        }
    }
}

impl From<&'static [u8]> for Blob {
    fn from(bytes: &'static [u8]) -> Self {
        Blob::from(Bytes::from_static(bytes))
    }
}

impl From<Blob> for Bytes {
    fn from(blob: Blob) -> Self {
        blob.bytes
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Blob {}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes", self.bytes.len())?;
        if self.memory.is_some() {
            f.write_str(", shared memory")?;
        }
        f.write_str(")")
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let attachment = || Attachment {
            bytes: self.bytes.clone(),
            shared: self
                .memory
                .clone()
                .map(|memory| memory as Arc<dyn std::any::Any + Send + Sync>),
        };
        match attachments::serialize_attached(serializer, self.bytes.len(), attachment) {
            Ok(referenced) => referenced,
            Err(serializer) => serializer.serialize_bytes(&self.bytes),
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BlobVisitor)
    }
}

struct BlobVisitor;

fn view_or_copy(bytes: &[u8]) -> Blob {
    Blob::from(
        attachments::borrowed_from_decoded(bytes).unwrap_or_else(|| Bytes::copy_from_slice(bytes)),
    )
}

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes (a kt::Blob)")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
        Ok(view_or_copy(bytes))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob::from(bytes))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Blob, E> {
        Ok(view_or_copy(text.as_bytes()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Blob::from(bytes))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, ext: D) -> Result<Blob, D::Error> {
        let attachment = attachments::deserialize_attached(ext)?;
        let memory = attachment
            .shared
            .and_then(|shared| shared.downcast::<SealedMemory>().ok());
        Ok(Blob {
            bytes: attachment.bytes,
            memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kt_core::codec;

    #[test]
    fn a_blob_is_one_bin_value_and_decodes_as_a_view_of_the_reply() {
        let blob = Blob::from(vec![9u8; 1000]);
        let reply = codec::encode_reply(&Ok(blob.clone()));
        // Tag, bin16 marker, two length bytes, the bytes.
        assert_eq!(reply.len(), 1 + 3 + 1000);
        let back: Blob = codec::decode_reply_of(&reply, None, "r").expect("decode");
        assert_eq!(back, blob);
        assert!(
            reply.as_ptr_range().contains(&back.as_ptr()),
            "a view, not a copy"
        );
        // Decoded from a plain slice, it is a copy.
        let copied: Blob = codec::decode_reply(&reply, "r").expect("decode");
        assert!(!reply.as_ptr_range().contains(&copied.as_ptr()));
    }

    #[test]
    fn large_blobs_go_beside_a_reply_that_takes_attachments_and_come_back_from_them() {
        let shared = Blob::in_shared_memory(ATTACH_MIN_BYTES, |b| b.fill(3)).expect("memfd");
        let small = Blob::from(vec![1u8; 10]);
        let value = (small.clone(), shared.clone(), 5u32);
        let (encoded, attached) = codec::with_encoded_reply_as(Ok(&value), true, |bytes, a| {
            (Bytes::copy_from_slice(bytes), a)
        });
        assert_eq!(attached.len(), 1);
        assert!(
            encoded.len() < 64,
            "the large blob is not inside: {} bytes",
            encoded.len()
        );
        let attached: Arc<[Attachment]> = Arc::from(attached);
        let (a, b, n): (Blob, Blob, u32) =
            codec::decode_reply_of(&encoded, Some(&attached), "r").expect("decode");
        assert_eq!((a, n), (small.clone(), 5));
        assert!(b.is_shared());
        assert_eq!(b.as_ptr(), shared.as_ptr(), "the same memory");

        // Without the attachments at hand, the reference is a clear error.
        let missing = codec::decode_reply::<(Blob, Blob, u32)>(&encoded, "the reply of `f`");
        match missing {
            Err(Error::Decode { message, .. }) => {
                assert!(message.contains("attachment 0"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }

        // Passed on to a receiver that takes none, the bytes go inline again.
        let inline = codec::inline_attachments(&encoded, &attached);
        let (_, b, _): (Blob, Blob, u32) = codec::decode_reply(&inline, "r").expect("decode");
        assert_eq!(b, shared);
    }

    #[test]
    fn blobs_read_from_sequences_of_bytes_too() {
        let as_array = codec::encode(&vec![1u8, 2, 3], "v").expect("encode");
        let blob: Blob = codec::decode(&as_array, "v").expect("decode");
        assert_eq!(&blob[..], &[1, 2, 3]);
        let json: Blob = serde_json::from_str("[4,5]").expect("json");
        assert_eq!(&json[..], &[4, 5]);
        assert_eq!(
            serde_json::to_string(&Blob::from(vec![6u8])).expect("json"),
            "[6]"
        );
    }

    #[test]
    fn garbage_extensions_are_errors() {
        // fixext4 of another type.
        let reply = [0u8, 0xd6, 0x01, 0, 0, 0, 0];
        assert!(codec::decode_reply::<Blob>(&reply, "r").is_err());
    }
}
