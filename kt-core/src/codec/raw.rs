//! Byte and number vectors as raw bytes: one MessagePack `bin` of their little-endian
//! bytes instead of a sequence of integers or floats.
//!
//! MessagePack writes a `Vec<u8>` as one integer per byte and a `Vec<f32>` as five bytes
//! per float, each read back one at a time: 100 MB took over a second. `#[kt::actor]`
//! encodes arguments and return values whose type is a vector of numbers
//! ([`RawElement`]) — also inside `Option` and `Result` — this way on its own. For a
//! vector inside a struct of yours, mark the field:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Gradients {
//!     step: u64,
//!     #[serde(with = "kt_core::codec::raw")]
//!     values: Vec<f32>,
//! }
//! let bytes = kt_core::codec::encode(&Gradients { step: 1, values: vec![0.5; 1000] }, "g").unwrap();
//! assert!(bytes.len() < 4 * 1000 + 32); // 4 bytes a float, not 5
//! ```
//!
//! Decoding also reads a plain MessagePack sequence, so a peer that sent one is understood.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::attachments::{self, Attachment};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// A number that travels raw: its little-endian bytes.
pub trait RawElement:
    bytemuck::Pod + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static
{
}

macro_rules! raw_elements {
    ($($t:ty),*) => { $(impl RawElement for $t {})* };
}
raw_elements!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64);

/// Serializes `values` as one `bin` of their little-endian bytes (for
/// `#[serde(with = "kt::raw")]`).
pub fn serialize<T: RawElement, S: Serializer>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return values.serialize(serializer);
    }
    #[cfg(target_endian = "little")]
    {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        // Large vectors go beside a reply that takes attachments, not inside it.
        let attachment = || Attachment {
            bytes: bytes::Bytes::copy_from_slice(bytes),
            shared: None,
        };
        match attachments::serialize_attached(serializer, bytes.len(), attachment) {
            Ok(referenced) => referenced,
            Err(serializer) => serializer.serialize_bytes(bytes),
        }
    }
    #[cfg(target_endian = "big")]
    {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
        for value in values {
            let mut le = bytemuck::bytes_of(value).to_vec();
            le.reverse();
            bytes.extend_from_slice(&le);
        }
        serializer.serialize_bytes(&bytes)
    }
}

/// Deserializes what [`serialize`] wrote (or a plain sequence of numbers).
pub fn deserialize<'de, T: RawElement, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    if deserializer.is_human_readable() {
        return Vec::<T>::deserialize(deserializer);
    }
    deserializer.deserialize_any(RawVisitor(PhantomData))
}

struct RawVisitor<T>(PhantomData<T>);

impl<'de, T: RawElement> Visitor<'de> for RawVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the raw bytes of a vector of {}",
            std::any::type_name::<T>()
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        let size = std::mem::size_of::<T>();
        if !bytes.len().is_multiple_of(size) {
            return Err(E::custom(format!(
                "{} bytes are not a whole number of {} ({size} bytes each)",
                bytes.len(),
                std::any::type_name::<T>()
            )));
        }
        // A copy into memory aligned for `T` (the bytes sit wherever the message put them).
        #[allow(unused_mut, reason = "mutated on big-endian targets only")]
        let mut values: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
        #[cfg(target_endian = "big")]
        for value in &mut values {
            bytemuck::bytes_of_mut(value).reverse();
        }
        Ok(values)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, ext: D) -> Result<Vec<T>, D::Error> {
        let attachment = attachments::deserialize_attached(ext)?;
        self.visit_bytes(&attachment.bytes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(value) = seq.next_element()? {
            values.push(value);
        }
        Ok(values)
    }
}

/// A vector that travels raw; what the macro puts on the wire for a `Vec<T>` argument
/// or return value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawVec<T>(pub Vec<T>);

impl<T: RawElement> Serialize for RawVec<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de, T: RawElement> Deserialize<'de> for RawVec<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(RawVec)
    }
}

/// A borrowed vector that travels raw (a reply being encoded, a broadcast's arguments).
#[derive(Debug, Clone, Copy)]
pub struct RawSlice<'a, T>(pub &'a [T]);

impl<T: RawElement> Serialize for RawSlice<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn vectors_of_numbers_are_one_bin_of_their_bytes_and_come_back() {
        let floats = vec![1.5f32, -2.0, f32::MAX, 0.0];
        let bytes = codec::encode(&RawVec(floats.clone()), "v").expect("encode");
        // bin8 marker, length, 16 bytes.
        assert_eq!(bytes.len(), 2 + 16);
        assert_eq!(&bytes[2..6], &1.5f32.to_le_bytes());
        let back: RawVec<f32> = codec::decode(&bytes, "v").expect("decode");
        assert_eq!(back.0, floats);
        let slice = codec::encode(&RawSlice(&floats[..]), "v").expect("encode");
        assert_eq!(slice, bytes);

        let longs = RawVec(vec![i64::MIN, 7, -1]);
        let back: RawVec<i64> =
            codec::decode(&codec::encode(&longs, "v").expect("encode"), "v").expect("decode");
        assert_eq!(back, longs);
    }

    #[test]
    fn a_plain_sequence_still_decodes_and_a_ragged_one_is_an_error() {
        let plain = codec::encode(&vec![1u16, 2, 3], "v").expect("encode");
        let back: RawVec<u16> = codec::decode(&plain, "v").expect("decode");
        assert_eq!(back.0, [1, 2, 3]);
        let ragged = codec::encode(&RawVec(vec![1u8, 2, 3]), "v").expect("encode");
        let error = codec::decode::<RawVec<u32>>(&ragged, "v").expect_err("3 bytes");
        assert!(
            error.to_string().contains("not a whole number of u32"),
            "{error}"
        );
    }

    #[test]
    fn json_keeps_numbers_readable() {
        let json = serde_json::to_string(&RawVec(vec![1u8, 2])).expect("json");
        assert_eq!(json, "[1,2]");
        let back: RawVec<u8> = serde_json::from_str(&json).expect("json");
        assert_eq!(back.0, [1, 2]);
    }
}
