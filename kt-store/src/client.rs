//! This process's side of the store: its holdings, how other processes reach it, and
//! how a get picks the path to a holder.
//!
//! The paths, best first: the bytes are in this process (no copy, no message); a holder
//! on this host (its memfd over a Unix socket, mapped read-only: no copy); a holder
//! elsewhere (a bulk stream over QUIC, verified chunk by chunk, resumed at the last good
//! chunk from the next holder when one breaks). A holder found gone is reported to the
//! directory, which forgets it; when none is left the get fails with `HolderLost` at
//! once rather than waiting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kt_core::Error;
use kt_transport::Node;
use kt_transport::TransportError;
use kt_transport::node::bulk::{BulkSource, serve_bulk_from};
use kt_transport::wire::sealed_memory::{SealedMemory, WritableMemory};
use tokio::sync::OnceCell;

use crate::directory::{Located, Publication};
use crate::holder::{HolderAddress, this_host};
use crate::holdings::{Held, Holdings};
use crate::same_host::{self, SameHostFailure};
use crate::session::directory;
use crate::traffic;
use crate::version::{ValueKind, Version, VersionInfo, check_key};

/// How a put is recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct PutOptions {
    pub meta: BTreeMap<String, String>,
    pub keep_last: Option<usize>,
}

/// The store of this process.
pub(crate) struct Store {
    holdings: Arc<Holdings>,
    me: OnceCell<HolderAddress>,
}

static STORE: LazyLock<Store> = LazyLock::new(|| Store {
    holdings: Arc::default(),
    me: OnceCell::new(),
});

/// This process's store.
pub(crate) fn store() -> &'static Store {
    &STORE
}

/// Serves held bytes on this process's bulk streams.
struct Source(Arc<Holdings>);

impl BulkSource for Source {
    fn sent(&self, key: &str, bytes: u64) {
        traffic::count(key, |t| t.sent_over_quic += bytes);
    }

    fn open(&self, key: String, version: u64) -> BoxFuture<'static, Result<Bytes, Error>> {
        let holdings = self.0.clone();
        Box::pin(async move {
            match holdings.find(&key, Version(version)).await {
                Some(held) => Ok(held.bytes),
                None => Err(Error::VersionGone {
                    key,
                    version,
                    kept: "none in this process".into(),
                }),
            }
        })
    }
}

impl Store {
    /// How other processes reach this one's values; starts serving them on first use.
    async fn me(&self) -> Result<&HolderAddress, Error> {
        self.me
            .get_or_try_init(|| async {
                let node = Node::global()?;
                serve_bulk_from(Arc::new(Source(self.holdings.clone())));
                let socket = match same_host::serve(self.holdings.clone(), node.runtime()) {
                    Ok(name) => Some(name),
                    Err(error) => {
                        tracing::warn!("{error}; getters on this host will use QUIC");
                        None
                    }
                };
                Ok::<_, Error>(HolderAddress {
                    node: node.address().to_string(),
                    host: this_host().to_string(),
                    socket,
                    pid: std::process::id(),
                })
            })
            .await
    }

    /// Writes a value of `size` bytes with `write` into a sealed memfd held here and
    /// records it as the next version of `key`.
    pub async fn put(
        &self,
        key: String,
        kind: ValueKind,
        size: usize,
        write: impl FnOnce(&mut [u8]) -> Result<(), Error>,
        options: PutOptions,
    ) -> Result<VersionInfo, Error> {
        check_key(&key)?;
        let me = self.me().await?.clone();
        let mut written = Ok(());
        let memory =
            SealedMemory::create_with(size, |buf| written = write(buf)).map_err(|error| {
                Error::Unavailable {
                    target: format!("memory for a {size}-byte value of '{key}'"),
                    message: error.to_string(),
                }
            })?;
        written?;
        let memory = Arc::new(memory);
        let directory = directory().await?;
        let in_flight = self.holdings.begin_put(&key);
        let published = directory
            .publish(Publication {
                key: key.clone(),
                size: size as u64,
                kind,
                meta: options.meta,
                put_at_ms: now_ms(),
                keep_last: options.keep_last,
                holder: me,
            })
            .await?;
        self.holdings.insert(Held {
            info: published.info.clone(),
            bytes: memory.clone().into_bytes(),
            memory: Some(memory),
        });
        drop(in_flight);
        self.holdings.remove(&key, &published.dropped);
        Ok(published.info)
    }

    /// The newest version of `key`, or `version` of it, from wherever it is held.
    pub async fn get(&self, key: &str, version: Option<Version>) -> Result<Held, Error> {
        check_key(key)?;
        let located = directory()
            .await?
            .locate(key.to_string(), version)
            .await??;
        self.fetch(located).await
    }

    /// The newest version of `key` once it is newer than `after`.
    pub async fn wait_newer(
        &self,
        key: &str,
        after: Version,
        timeout_ms: Option<u64>,
    ) -> Result<Held, Error> {
        check_key(key)?;
        let located = directory()
            .await?
            .wait_newer(key.to_string(), after, timeout_ms)
            .await??;
        self.fetch(located).await
    }

    /// The located version's bytes: held here, or fetched from a holder (and kept, so
    /// that this process serves them too).
    async fn fetch(&self, located: Located) -> Result<Held, Error> {
        let Located {
            info,
            holders,
            oldest_kept,
            last_lost,
        } = located;
        let (key, version) = (info.key.clone(), info.version);
        self.holdings.forget_older(&key, oldest_kept);
        if let Some(held) = self.holdings.get(&key, version) {
            return Ok(held);
        }
        let me = self.me().await?.clone();
        let directory = directory().await?;
        let mut last_tried = last_lost;
        let mut resume = RemoteCopy::default();
        for holder in best_first(holders) {
            let fetched = match holder == me {
                // The directory thinks this process has it, but it does not (any more).
                true => Err(()),
                false => self.fetch_from(&holder, &info, &mut resume).await,
            };
            match fetched {
                Ok(held) => {
                    self.holdings.insert(held.clone());
                    // Sent now; nobody waits for the answer.
                    drop(directory.add_holder(key.clone(), version, me));
                    return Ok(held);
                }
                Err(()) => {
                    drop(directory.lost(key.clone(), version, holder.clone()));
                    last_tried = Some(holder);
                }
            }
        }
        Err(holder_lost(key, version, last_tried))
    }

    /// Copies the newest version of `key` into `target`: out of the mapping when it is
    /// held on this host, else straight from a holder's bulk stream into `target`.
    pub async fn get_into(&self, key: &str, target: &mut [u8]) -> Result<VersionInfo, Error> {
        check_key(key)?;
        let located = directory().await?.locate(key.to_string(), None).await??;
        let size = located.info.size as usize;
        if target.len() < size {
            return Err(Error::invalid_options(format!(
                "'{key}' {} is {size} bytes, and the buffer given to get_into holds only {}: \
                 pass a buffer of at least {size} bytes",
                located.info.version,
                target.len()
            )));
        }
        let nearby = self.holdings.get(key, located.info.version).is_some()
            || located.holders.iter().any(HolderAddress::on_this_host);
        if nearby {
            let held = self.fetch(located).await?;
            target[..size].copy_from_slice(&held.bytes);
            return Ok(held.info);
        }
        let Located {
            info,
            holders,
            last_lost,
            ..
        } = located;
        let node = Node::global()?;
        let directory = directory().await?;
        let mut verified = 0;
        let mut last_tried = last_lost;
        for holder in holders {
            let Ok(address) = holder.node.parse::<SocketAddr>() else {
                continue;
            };
            let from = verified;
            match node
                .fetch_into(address, key, info.version.0, from, &mut target[..size])
                .await
            {
                Ok(()) => {
                    traffic::count(key, |t| t.received_over_quic += info.size - from);
                    return Ok(info);
                }
                Err(failure) => {
                    tracing::debug!("fetching '{key}' {}: {}", info.version, failure.error);
                    verified = failure.verified;
                    traffic::count(key, |t| t.received_over_quic += verified - from);
                    drop(directory.lost(key.to_string(), info.version, holder.clone()));
                    last_tried = Some(holder);
                }
            }
        }
        Err(holder_lost(key.to_string(), info.version, last_tried))
    }

    /// Frees this process's copies of removed versions.
    pub fn forget(&self, key: &str, versions: &[Version]) {
        self.holdings.remove(key, versions);
    }

    /// One holder's copy; `Err` when it is gone or has none (the caller tries the next).
    async fn fetch_from(
        &self,
        holder: &HolderAddress,
        info: &VersionInfo,
        resume: &mut RemoteCopy,
    ) -> Result<Held, ()> {
        if holder.on_this_host()
            && let Some(socket) = &holder.socket
        {
            match same_host::fetch(socket, &info.key, info.version, info.size).await {
                Ok(memory) => {
                    traffic::count(&info.key, |t| t.mapped_from_this_host += info.size);
                    return Ok(Held {
                        info: info.clone(),
                        bytes: memory.clone().into_bytes(),
                        memory: Some(memory),
                    });
                }
                Err(SameHostFailure::Gone(error)) => {
                    tracing::debug!("{error}");
                    return Err(());
                }
                // It answered but could not pass the memfd: try its QUIC node.
                Err(SameHostFailure::NotHeld(error)) => tracing::debug!("{error}"),
            }
        }
        let address: SocketAddr = holder.node.parse().map_err(|_| ())?;
        let node = Node::global().map_err(|_| ())?;
        let from = resume.verified;
        let buffer = resume.buffer(info.size as usize).map_err(|error| {
            tracing::warn!(
                "no memory for a copy of '{}' {}: {error}",
                info.key,
                info.version
            );
        })?;
        let fetched = node
            .fetch_into(address, &info.key, info.version.0, from, buffer)
            .await;
        let verified = fetched.as_ref().map_or_else(|f| f.verified, |()| info.size);
        traffic::count(&info.key, |t| {
            t.received_over_quic += verified.saturating_sub(from)
        });
        match fetched {
            Ok(()) => {
                let memory = resume.seal().map_err(|error| {
                    tracing::warn!("sealing a copy of '{}': {error}", info.key);
                })?;
                Ok(Held {
                    info: info.clone(),
                    bytes: memory.clone().into_bytes(),
                    memory: Some(memory),
                })
            }
            Err(failure) => {
                tracing::debug!(
                    "fetching '{}' {}: {}",
                    info.key,
                    info.version,
                    failure.error
                );
                resume.verified = failure.verified;
                Err(())
            }
        }
    }
}

/// A copy arriving over QUIC, straight into a memfd (so that this process can pass it
/// on to getters on its host), kept across holders so that a broken transfer resumes at
/// its last verified chunk.
#[derive(Default)]
struct RemoteCopy {
    memory: Option<WritableMemory>,
    verified: u64,
}

impl RemoteCopy {
    /// The buffer, made on first use.
    fn buffer(&mut self, size: usize) -> Result<&mut [u8], TransportError> {
        if self.memory.is_none() {
            self.memory = Some(SealedMemory::writable(size)?);
        }
        match &mut self.memory {
            Some(memory) => Ok(memory.as_mut_slice()),
            None => Err(TransportError::Io("no copy was made".into())),
        }
    }

    /// The finished copy.
    fn seal(&mut self) -> Result<Arc<SealedMemory>, TransportError> {
        let memory = self
            .memory
            .take()
            .ok_or_else(|| TransportError::Io("no copy was made".into()))?;
        Ok(Arc::new(memory.seal()?))
    }
}

fn holder_lost(key: String, version: Version, last_tried: Option<HolderAddress>) -> Error {
    Error::HolderLost {
        key,
        version: version.0,
        holder: last_tried.map_or_else(|| "none recorded".into(), |h| h.to_string()),
    }
}

/// Holders on this host first (no copy), then the others in the directory's order.
fn best_first(mut holders: Vec<HolderAddress>) -> Vec<HolderAddress> {
    holders.sort_by_key(|holder| !holder.on_this_host());
    holders
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
