//! What the store knows of a value: its key, its version, its size and its producer's
//! metadata.

use std::collections::BTreeMap;
use std::fmt;

use kt_core::Error;
use serde::{Deserialize, Serialize};

/// The longest key the store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A value's version under its key: 1 for the first put, then one more per put. Versions
/// are never reused, not even after `rm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

impl Version {
    /// "No version yet": `wait_newer(key, Version::NONE)` waits for the first put.
    pub const NONE: Version = Version(0);
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// How a value's bytes are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueKind {
    /// Plain bytes (`put` of `Bytes`, `Vec<u8>`, ...).
    Bytes,
    /// A serde value in MessagePack (`put_value`).
    Value,
    /// Named tensors in the safetensors layout (`put_tensors`).
    Tensors,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Bytes => "bytes",
            ValueKind::Value => "a serde value",
            ValueKind::Tensors => "a tensor set",
        })
    }
}

/// Everything the directory records of one version, handed to every getter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The key.
    pub key: String,
    /// The version.
    pub version: Version,
    /// The value's size in bytes.
    pub size: u64,
    /// How the bytes are to be read.
    pub kind: ValueKind,
    /// What the producer attached (a training step, a checksum, ...).
    pub meta: BTreeMap<String, String>,
    /// When it was put, in milliseconds since the Unix epoch (the putter's clock).
    pub put_at_ms: u64,
}

impl VersionInfo {
    /// The producer's metadata entry `name`, if any.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta.get(name).map(String::as_str)
    }
}

/// Checks a key before it goes anywhere: non-empty, at most [`MAX_KEY_BYTES`], no NUL.
pub fn check_key(key: &str) -> Result<(), Error> {
    let problem = if key.is_empty() {
        "a store key cannot be empty".to_string()
    } else if key.len() > MAX_KEY_BYTES {
        format!(
            "the store key '{}…' is {} bytes long, over the limit of {MAX_KEY_BYTES}: use a \
             shorter key",
            key.chars().take(40).collect::<String>(),
            key.len()
        )
    } else if key.contains('\0') {
        format!("the store key {key:?} contains a NUL byte: remove it")
    } else {
        return Ok(());
    };
    Err(Error::invalid_options(problem))
}

/// Now, in ms since the epoch (what version records and transfers are stamped with).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_before_use() {
        assert!(check_key("policy/weights").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("a\0b").is_err());
        let long = "é".repeat(MAX_KEY_BYTES);
        let error = check_key(&long).expect_err("too long").to_string();
        assert!(error.contains("over the limit of 1024"), "{error}");
    }

    #[test]
    fn versions_order_and_print() {
        assert!(Version::NONE < Version(1));
        assert_eq!(Version(3).to_string(), "v3");
    }
}
