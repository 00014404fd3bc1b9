//! Large byte buffers that travel beside an encoded value instead of inside it.
//!
//! A value is MessagePack, and MessagePack would carry a 100 MB buffer as 100 MB of
//! `bin` in the middle of the reply: the encoder copies it into its buffer, the
//! transport copies it again, the decoder a third time. Types made for bulk bytes (the
//! transport's `Blob`) do better in two ways, both through this module:
//!
//! - **Decoding without a copy.** While a reply that came in as [`Bytes`] is decoded
//!   ([`while_decoding`]), [`borrowed_from_decoded`] turns a slice of it back into a
//!   `Bytes` view of the same memory, so a `Blob` inside the reply shares the received
//!   buffer.
//! - **Attachments.** While a reply for a caller that can take them is encoded
//!   ([`while_attaching`]), a large buffer calls [`attach`] and writes only a MessagePack
//!   extension value ([`EXT_TAG`], its index) in its place; the transport hands the
//!   attachments over another way (a sealed memfd over a Unix socket to a caller on the
//!   same host), and the caller decodes the reply with them at hand ([`attached`]).
//!
//! The state is per thread and strictly nested: an encode or decode that runs inside
//! another (a `Serialize` impl that encodes) sees its own, and finds everything as it
//! was afterwards.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

use bytes::Bytes;

/// The MessagePack extension type of an attachment reference: its payload is the
/// attachment's index, a big-endian `u32`.
pub const EXT_TAG: i8 = 0x4b;

/// The newtype name under which the codec reads and writes MessagePack extensions.
pub const EXT_STRUCT_NAME: &str = rmp_serde::MSGPACK_EXT_STRUCT_NAME;

/// Buffers at least this long go beside a value whose receiver takes attachments rather
/// than inside it: below it, a copy costs less than handing them over another way.
pub const ATTACH_MIN_BYTES: usize = 64 * 1024;

/// Writes an attachment reference for `len` bytes when the value being encoded takes
/// attachments and they are long enough ([`ATTACH_MIN_BYTES`]); `make` gives the
/// attachment (called only then). `Err(serializer)`: write the bytes inline with it.
pub fn serialize_attached<S: serde::Serializer>(
    serializer: S,
    len: usize,
    make: impl FnOnce() -> Attachment,
) -> Result<Result<S::Ok, S::Error>, S> {
    if len < ATTACH_MIN_BYTES || serializer.is_human_readable() {
        return Err(serializer);
    }
    match attach(make()) {
        Some(index) => Ok(serializer.serialize_newtype_struct(EXT_STRUCT_NAME, &Reference(index))),
        None => Err(serializer),
    }
}

/// The body of an attachment reference: the extension tag and the index.
struct Reference(u32);

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&EXT_TAG)?;
        tuple.serialize_element(&AsBin(&self.0.to_be_bytes()))?;
        tuple.end()
    }
}

struct AsBin<'a>(&'a [u8]);

impl serde::Serialize for AsBin<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Reads an attachment reference from the MessagePack extension `ext` (what a visitor's
/// `visit_newtype_struct` is given for one) and returns the attachment it names.
pub fn deserialize_attached<'de, D: serde::Deserializer<'de>>(
    ext: D,
) -> Result<Attachment, D::Error> {
    use serde::Deserialize;
    let (tag, index) = <(i8, Index)>::deserialize(ext)?;
    if tag != EXT_TAG {
        return Err(serde::de::Error::custom(format!(
            "a MessagePack extension of type {tag} is not an attachment reference"
        )));
    }
    attached(index.0).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "the value refers to attachment {} that did not come with it",
            index.0
        ))
    })
}

/// An attachment's index, four big-endian bytes.
struct Index(u32);

impl<'de> serde::Deserialize<'de> for Index {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IndexVisitor;
        impl serde::de::Visitor<'_> for IndexVisitor {
            type Value = Index;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an attachment index (4 bytes)")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Index, E> {
                let bytes: [u8; 4] = bytes
                    .try_into()
                    .map_err(|_| E::invalid_length(bytes.len(), &self))?;
                Ok(Index(u32::from_be_bytes(bytes)))
            }
        }
        deserializer.deserialize_bytes(IndexVisitor)
    }
}

/// One buffer handed over beside an encoded value.
#[derive(Clone)]
pub struct Attachment {
    /// The bytes.
    pub bytes: Bytes,
    /// What `bytes` are the whole of, when it can be handed to another process as it is
    /// (the transport's sealed memory); `None` for bytes that must be copied first.
    pub shared: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("len", &self.bytes.len())
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

thread_local! {
    /// Whether the value being encoded on this thread takes attachments. (Plain cells and
    /// one list kept for the thread: entering and leaving costs a few instructions on
    /// every remote reply, which is the hot path.)
    static ATTACHING: Cell<bool> = const { Cell::new(false) };
    /// Where the attachments of the value being encoded start in [`ATTACHED`].
    static BASE: Cell<usize> = const { Cell::new(0) };
    /// The attachments made so far, of this encode and of those it runs inside.
    static ATTACHED: RefCell<Vec<Attachment>> = const { RefCell::new(Vec::new()) };
    /// The bytes being decoded on this thread and the attachments that came with them.
    static DECODING: RefCell<Option<Decoding>> = const { RefCell::new(None) };
}

struct Decoding {
    owner: Bytes,
    attachments: Option<Arc<[Attachment]>>,
}

/// Puts back the decode that was under way when this one started, even by a panic.
struct Resume(Option<Decoding>);

impl Drop for Resume {
    fn drop(&mut self) {
        DECODING.set(self.0.take());
    }
}

/// Leaves attaching mode as it was when the encode started, even by a panic, dropping
/// what the encode attached and did not take.
struct Leave {
    was_attaching: bool,
    base: usize,
    previous_base: usize,
}

impl Drop for Leave {
    fn drop(&mut self) {
        ATTACHING.set(self.was_attaching);
        BASE.set(self.previous_base);
        ATTACHED.with_borrow_mut(|attached| attached.truncate(self.base));
    }
}

/// Runs `encode` with attachments taken, and returns what it returned with the
/// attachments it made (in index order).
pub fn while_attaching<R>(encode: impl FnOnce() -> R) -> (R, Vec<Attachment>) {
    let base = ATTACHED.with_borrow(Vec::len);
    let leave = Leave {
        was_attaching: ATTACHING.replace(true),
        base,
        previous_base: BASE.replace(base),
    };
    let out = encode();
    let made = ATTACHED.with_borrow_mut(|attached| match attached.len() > base {
        true => attached.split_off(base),
        false => Vec::new(),
    });
    drop(leave);
    (out, made)
}

/// Adds `attachment` to the value being encoded, if its receiver takes attachments:
/// its index, to write in its place. `None`: write the bytes inline.
pub fn attach(attachment: Attachment) -> Option<u32> {
    if !ATTACHING.get() {
        return None;
    }
    let base = BASE.get();
    ATTACHED.with_borrow_mut(|attached| {
        let index = u32::try_from(attached.len() - base).ok()?;
        attached.push(attachment);
        Some(index)
    })
}

/// Runs `decode` over `owner` (the bytes it decodes) with `attachments`, if any, at hand.
pub fn while_decoding<R>(
    owner: &Bytes,
    attachments: Option<&Arc<[Attachment]>>,
    decode: impl FnOnce() -> R,
) -> R {
    let _resume = Resume(DECODING.replace(Some(Decoding {
        owner: owner.clone(),
        attachments: attachments.cloned(),
    })));
    decode()
}

/// Attachment `index` of the value being decoded, if there is one.
pub fn attached(index: u32) -> Option<Attachment> {
    DECODING.with(|cell| {
        let decoding = cell.borrow();
        let attachments = decoding.as_ref()?.attachments.as_ref()?;
        attachments.get(usize::try_from(index).ok()?).cloned()
    })
}

/// `slice` as a view of the bytes being decoded, when it lies inside them (no copy).
pub fn borrowed_from_decoded(slice: &[u8]) -> Option<Bytes> {
    DECODING.with(|cell| {
        let decoding = cell.borrow();
        let owner = &decoding.as_ref()?.owner;
        let start = owner.as_ptr() as usize;
        let at = slice.as_ptr() as usize;
        let inside = at >= start && at + slice.len() <= start + owner.len();
        // An empty slice may point anywhere: `slice_ref` takes it either way.
        (inside && !slice.is_empty()).then(|| owner.slice_ref(slice))
    })
}

/// Rewrites the MessagePack value `value` with each attachment reference replaced by
/// the attachment's bytes as `bin`, for a receiver that takes no attachments (a reply
/// passed on to a caller in another process). Walks the value without recursion, so a
/// hostile nesting depth costs nothing but its length.
pub fn inline(value: &[u8], attachments: &[Attachment], out: &mut Vec<u8>) -> Result<(), String> {
    use rmp::Marker;
    let mut at = 0usize;
    // Values still to read: an array adds its items, a map twice its entries.
    let mut remaining: u64 = 1;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|&end| end <= value.len());
        let end = end.ok_or_else(|| format!("the value ends inside an item at byte {at}"))?;
        let bytes = &value[*at..end];
        *at = end;
        Ok(bytes)
    };
    let be = |bytes: &[u8]| bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    while remaining > 0 {
        remaining -= 1;
        let start = at;
        let marker = Marker::from_u8(take(&mut at, 1)?[0]);
        // How many more bytes the item has after its marker and length, and how long
        // the length is; ext items are looked at before they are copied.
        let (length_bytes, fixed) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (0, 1),
            Marker::U16 | Marker::I16 => (0, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8),
            Marker::FixStr(n) => (0, usize::from(n)),
            Marker::Str8 | Marker::Bin8 => (1, 0),
            Marker::Str16 | Marker::Bin16 => (2, 0),
            Marker::Str32 | Marker::Bin32 => (4, 0),
            Marker::FixArray(n) => {
                remaining += u64::from(n);
                (0, 0)
            }
            Marker::FixMap(n) => {
                remaining += 2 * u64::from(n);
                (0, 0)
            }
            Marker::Array16 | Marker::Map16 | Marker::Array32 | Marker::Map32 => {
                let width = match marker {
                    Marker::Array16 | Marker::Map16 => 2,
                    _ => 4,
                };
                let n = be(take(&mut at, width)?) as u64;
                remaining += match marker {
                    Marker::Map16 | Marker::Map32 => 2 * n,
                    _ => n,
                };
                (0, 0)
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16 => {
                let n = match marker {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    _ => 16,
                };
                (0, 1 + n)
            }
            Marker::Ext8 => (1, 1),
            Marker::Ext16 => (2, 1),
            Marker::Ext32 => (4, 1),
            Marker::Reserved => return Err(format!("byte {start} is the reserved marker 0xc1")),
        };
        let length = be(take(&mut at, length_bytes)?);
        let body = take(&mut at, length + fixed)?;
        let is_ext = matches!(
            marker,
            Marker::FixExt4 | Marker::Ext8 | Marker::Ext16 | Marker::Ext32
        );
        if is_ext && body.len() == 5 && body[0] as i8 == EXT_TAG {
            let index = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
            let attachment = usize::try_from(index)
                .ok()
                .and_then(|i| attachments.get(i))
                .ok_or_else(|| format!("attachment {index} of {} is missing", attachments.len()))?;
            let len = u32::try_from(attachment.bytes.len())
                .map_err(|_| format!("attachment {index} is over 4 GiB"))?;
            rmp::encode::write_bin_len(out, len).map_err(|e| e.to_string())?;
            out.extend_from_slice(&attachment.bytes);
        } else {
            out.extend_from_slice(&value[start..at]);
        }
    }
    match at == value.len() {
        true => Ok(()),
        false => Err(format!("{} bytes follow the value", value.len() - at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(bytes: &'static [u8]) -> Attachment {
        Attachment {
            bytes: Bytes::from_static(bytes),
            shared: None,
        }
    }

    #[test]
    fn attachments_are_taken_only_while_attaching() {
        assert_eq!(attach(attachment(b"a")), None);
        let (out, attachments) = while_attaching(|| {
            let first = attach(attachment(b"a"));
            // An encode nested inside takes its own.
            let (_, inner) = while_attaching(|| attach(attachment(b"inner")));
            assert_eq!(inner.len(), 1);
            (first, attach(attachment(b"b")))
        });
        assert_eq!(out, (Some(0), Some(1)));
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[1].bytes, Bytes::from_static(b"b"));
        assert_eq!(attach(attachment(b"c")), None);
    }

    #[test]
    fn slices_of_the_decoded_bytes_become_views_of_them() {
        let owner = Bytes::from(vec![7u8; 64]);
        let other = vec![7u8; 8];
        let one: Arc<[Attachment]> = Arc::from(vec![attachment(b"x")]);
        while_decoding(&owner, Some(&one), || {
            let view = borrowed_from_decoded(&owner[8..16]).expect("inside");
            assert_eq!(view.as_ptr(), owner[8..].as_ptr());
            assert!(borrowed_from_decoded(&other).is_none());
            assert_eq!(attached(0).map(|a| a.bytes), Some(Bytes::from_static(b"x")));
            assert!(attached(1).is_none());
        });
        assert!(borrowed_from_decoded(&owner[8..16]).is_none());
        assert!(attached(0).is_none());
    }
}
