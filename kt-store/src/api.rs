//! The store's functions: what `kt::store::*` is.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use kt_core::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{PutOptions, store};
use crate::directory::{KeyListing, Versions};
use crate::holdings::{Held, Usage};
use crate::session::directory;
use crate::tensors::{self, SafeTensors, TensorSet};
use crate::version::{ValueKind, Version, VersionInfo, check_key};

/// What a put stores: bytes of a kind, or a tensor set written in place.
enum Payload {
    Bytes(ValueKind, Bytes),
    Tensors(TensorSet),
}

/// A put being prepared: add metadata or a retention, then `.await` it for the version.
#[must_use = "a put does nothing until it is awaited"]
pub struct Put {
    key: String,
    payload: Result<Payload, Error>,
    options: PutOptions,
}

impl Put {
    /// Attaches `name = value` to the version (a training step, a source, ...); getters
    /// read it with [`VersionInfo::meta`].
    pub fn meta(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.options.meta.insert(name.into(), value.to_string());
        self
    }

    /// Keeps only the newest `n` versions of the key from this put on (at least one);
    /// older ones are dropped from the directory and freed by their holders.
    pub fn keep_last(mut self, n: usize) -> Self {
        self.options.keep_last = Some(n.max(1));
        self
    }
}

impl IntoFuture for Put {
    type Output = Result<Version, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Version, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let store = store();
            let info = match self.payload? {
                Payload::Bytes(kind, bytes) => {
                    let write = |out: &mut [u8]| {
                        out.copy_from_slice(&bytes);
                        Ok(())
                    };
                    store
                        .put(self.key, kind, bytes.len(), write, self.options)
                        .await?
                }
                Payload::Tensors(set) => {
                    let size = set.encoded_len()?;
                    let write = |out: &mut [u8]| set.write_into(out);
                    store
                        .put(self.key, ValueKind::Tensors, size, write, self.options)
                        .await?
                }
            };
            Ok(info.version)
        })
    }
}

/// Puts `bytes` as the next version of `key`; `.await` it for the version. The bytes
/// stay in this process (in a sealed memfd) and are served from here.
pub fn put(key: impl Into<String>, bytes: impl Into<Bytes>) -> Put {
    Put {
        key: key.into(),
        payload: Ok(Payload::Bytes(ValueKind::Bytes, bytes.into())),
        options: PutOptions::default(),
    }
}

/// Puts any serde value (in MessagePack) as the next version of `key`.
pub fn put_value<T: Serialize + ?Sized>(key: impl Into<String>, value: &T) -> Put {
    let key = key.into();
    let payload = kt_core::codec::encode(value, format_args!("the value for '{key}'"));
    Put {
        key,
        payload: payload.map(|encoded| Payload::Bytes(ValueKind::Value, encoded.into())),
        options: PutOptions::default(),
    }
}

/// Puts named tensors, in the safetensors layout, as the next version of `key`.
pub fn put_tensors(key: impl Into<String>, tensors: TensorSet) -> Put {
    Put {
        key: key.into(),
        payload: Ok(Payload::Tensors(tensors)),
        options: PutOptions::default(),
    }
}

/// One version of a value, as a get returns it: its record and its bytes, which are a
/// read-only mapping of the holder's memory when it is on this host (no copy).
#[derive(Clone)]
pub struct Entry {
    info: VersionInfo,
    bytes: Bytes,
}

impl Entry {
    fn from_held(held: Held) -> Entry {
        Entry {
            info: held.info,
            bytes: held.bytes,
        }
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.info.version
    }

    /// What the directory recorded: key, version, size, kind, the producer's metadata.
    pub fn info(&self) -> &VersionInfo {
        &self.info
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The raw bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The value as `T`, for a value put with [`put_value`].
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.expect_kind(ValueKind::Value)?;
        kt_core::codec::decode(
            &self.bytes,
            format_args!("the value under '{}'", self.info.key),
        )
    }

    /// The tensors, as zero-copy views, for a value put with [`put_tensors`].
    pub fn tensors(&self) -> Result<SafeTensors<'_>, Error> {
        self.expect_kind(ValueKind::Tensors)?;
        tensors::read(&self.bytes, &self.info.key)
    }

    fn expect_kind(&self, kind: ValueKind) -> Result<(), Error> {
        if self.info.kind == kind {
            return Ok(());
        }
        let (holds, read_with) = match self.info.kind {
            ValueKind::Bytes => ("bytes (put with `put`)", "Entry::bytes()"),
            ValueKind::Value => ("a serde value (put with `put_value`)", "Entry::value()"),
            ValueKind::Tensors => ("a tensor set (put with `put_tensors`)", "Entry::tensors()"),
        };
        Err(Error::WrongValueKind {
            key: self.info.key.clone(),
            version: self.info.version.0,
            holds: holds.into(),
            read_with: read_with.into(),
        })
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("info", &self.info)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The newest version of `key`.
pub async fn get(key: &str) -> Result<Entry, Error> {
    store().get(key, None).await.map(Entry::from_held)
}

/// Version `version` of `key`; `VersionGone` when it was removed or dropped by the key's
/// retention.
pub async fn get_at(key: &str, version: Version) -> Result<Entry, Error> {
    store().get(key, Some(version)).await.map(Entry::from_held)
}

/// Waits for a version of `key` newer than `after` (`Version::NONE`: any) and returns
/// the newest: at once if there is one, else as soon as it is put. The directory answers
/// the wait when the put reaches it: nothing polls.
pub fn wait_newer(key: impl Into<String>, after: Version) -> WaitNewer {
    WaitNewer {
        key: key.into(),
        after,
        timeout: None,
    }
}

/// A [`wait_newer`] being prepared: `.await` it for the entry.
#[must_use = "a wait does nothing until it is awaited"]
pub struct WaitNewer {
    key: String,
    after: Version,
    timeout: Option<Duration>,
}

impl WaitNewer {
    /// Fails with `Error::Timeout` when no newer version comes within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl IntoFuture for WaitNewer {
    type Output = Result<Entry, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Entry, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let timeout_ms = self.timeout.map(|t| t.as_millis() as u64);
            store()
                .wait_newer(&self.key, self.after, timeout_ms)
                .await
                .map(Entry::from_held)
        })
    }
}

/// Copies the newest version of `key` into `target` (a preallocated buffer at least as
/// large as the value) and returns its record; the value's bytes are `target[..size]`.
/// From a holder on another host the bytes arrive straight in `target`.
pub async fn get_into(key: &str, target: &mut [u8]) -> Result<VersionInfo, Error> {
    store().get_into(key, target).await
}

/// What this process's store holds against its budget: memory and disk used, and how
/// many originals, spilled originals and cached copies it keeps.
pub fn usage() -> Usage {
    store().usage()
}

/// Every key starting with `prefix`, sorted, with its kept versions and how many
/// processes hold each.
pub async fn ls(prefix: &str) -> Result<Vec<KeyListing>, Error> {
    directory().await?.list(prefix.to_string()).await
}

/// Removes versions of `key`; returns the versions removed once every holder of them
/// (the putter, and every getter that kept a copy) has dropped its copies, in memory or
/// spilled, or could not be reached within 5 s. Versions that fall out of a key's
/// retention (`keep_last`) are let go by their holders the same way, without the put
/// waiting for it.
pub async fn rm(key: &str, versions: Versions) -> Result<Vec<Version>, Error> {
    check_key(key)?;
    let removed = directory()
        .await?
        .remove(key.to_string(), versions)
        .await??;
    store().forget(key, &removed);
    Ok(removed)
}
