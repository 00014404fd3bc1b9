//! NCCL: is it here, which version, and the unique id a group shares.
//!
//! These work wherever an NCCL library is installed, GPU or not (`ncclGetVersion` and
//! `ncclGetUniqueId` need no device); the tests exercise them against a stub NCCL.

use std::fmt;
use std::path::PathBuf;

use cudarc::nccl::sys::ncclUniqueId;
use kt_core::Error;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::nccl_api::{NCCL_SUCCESS, nccl};

/// An NCCL release, `2.30.4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NcclVersion {
    /// Major version (2).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
}

/// The oldest NCCL kt-gpu uses: 2.14 brought non-blocking communicators
/// (`ncclCommInitRankConfig` with `blocking = 0`) and `ncclCommFinalize`. Every NCCL
/// function kt-gpu calls is checked when the library loads, so an older or incomplete
/// NCCL is a typed error, never a panic on first use.
pub const MIN_NCCL_VERSION: NcclVersion = NcclVersion {
    major: 2,
    minor: 14,
    patch: 0,
};

impl NcclVersion {
    /// Decodes `ncclGetVersion`'s integer (`NCCL_VERSION_CODE`: 23004 for 2.30.4, and
    /// 2804 for 2.8.4 in the old scheme).
    pub fn from_code(code: i32) -> NcclVersion {
        let code = code.max(0) as u32;
        if code >= 10000 {
            NcclVersion {
                major: code / 10000,
                minor: code % 10000 / 100,
                patch: code % 100,
            }
        } else {
            NcclVersion {
                major: code / 1000,
                minor: code % 1000 / 100,
                patch: code % 100,
            }
        }
    }
}

impl fmt::Display for NcclVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of the NCCL this process uses, loading it on first call.
///
/// No NCCL, one that cannot be loaded, or one older than [`MIN_NCCL_VERSION`] is
/// [`Error::GpuUnavailable`] saying what to install or set (`KT_NCCL_LIBRARY`).
pub fn nccl_version() -> Result<NcclVersion, Error> {
    Ok(nccl()?.version)
}

/// The file this process loaded NCCL from.
pub fn nccl_library_path() -> Result<PathBuf, Error> {
    Ok(nccl()?.path.clone())
}

/// The id that names one NCCL group: rank 0 makes it with [`UniqueId::new`] and sends it
/// to every member (it serializes as 128 bytes, so it can travel as an actor call's
/// argument); each member passes it to [`crate::Communicator::new`].
///
/// It holds the address of the root's bootstrap socket: members must be able to reach
/// that address, and one id serves one group only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UniqueId {
    bytes: [u8; UniqueId::LEN],
}

impl UniqueId {
    /// The size of an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
    pub const LEN: usize = 128;

    /// A fresh id from `ncclGetUniqueId` (no GPU needed; it opens the bootstrap socket).
    pub fn new() -> Result<UniqueId, Error> {
        let api = nccl()?;
        let mut raw = ncclUniqueId {
            internal: [0; UniqueId::LEN],
        };
        // SAFETY: ncclGetUniqueId fills the 128-byte struct it is given.
        let status = unsafe { (api.get_unique_id)(&mut raw) };
        if status != NCCL_SUCCESS {
            return Err(api.error("ncclGetUniqueId", status, std::ptr::null_mut()));
        }
        Ok(UniqueId {
            bytes: raw.internal.map(|byte| byte as u8),
        })
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; UniqueId::LEN] {
        &self.bytes
    }

    /// An id from bytes another member sent; `None` unless there are exactly
    /// [`UniqueId::LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Option<UniqueId> {
        Some(UniqueId {
            bytes: bytes.try_into().ok()?,
        })
    }

    pub(crate) fn raw(&self) -> ncclUniqueId {
        ncclUniqueId {
            internal: self.bytes.map(|byte| byte as std::ffi::c_char),
        }
    }
}

impl fmt::Debug for UniqueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UniqueId(")?;
        for byte in &self.bytes[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "..)")
    }
}

impl Serialize for UniqueId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for UniqueId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<UniqueId, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = UniqueId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "the {} bytes of an NCCL unique id", UniqueId::LEN)
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<UniqueId, E> {
                UniqueId::from_bytes(bytes).ok_or_else(|| E::invalid_length(bytes.len(), &self))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueId, A::Error> {
                let mut bytes = [0u8; UniqueId::LEN];
                for (i, slot) in bytes.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(de::Error::invalid_length(UniqueId::LEN + 1, &self));
                }
                Ok(UniqueId { bytes })
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_codes_decode_in_both_schemes() {
        let v = |major, minor, patch| NcclVersion {
            major,
            minor,
            patch,
        };
        assert_eq!(NcclVersion::from_code(23004), v(2, 30, 4));
        assert_eq!(NcclVersion::from_code(21403), v(2, 14, 3));
        assert_eq!(NcclVersion::from_code(2804), v(2, 8, 4));
        assert_eq!(NcclVersion::from_code(23004).to_string(), "2.30.4");
        assert!(NcclVersion::from_code(21306) < MIN_NCCL_VERSION);
        assert!(NcclVersion::from_code(21400) >= MIN_NCCL_VERSION);
    }

    #[test]
    fn a_unique_id_round_trips_through_msgpack_and_json() {
        let mut bytes = [0u8; UniqueId::LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i * 7) as u8;
        }
        let id = UniqueId::from_bytes(&bytes).unwrap();
        let packed = rmp_serde::to_vec(&id).unwrap();
        assert!(
            packed.len() < UniqueId::LEN + 4,
            "msgpack keeps it as bytes"
        );
        assert_eq!(rmp_serde::from_slice::<UniqueId>(&packed).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<UniqueId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<UniqueId>("[1,2,3]").is_err());
        assert!(UniqueId::from_bytes(&bytes[..100]).is_none());
        assert_eq!(format!("{id:?}"), "UniqueId(00070e151c232a31..)");
    }
}
