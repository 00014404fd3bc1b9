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
use kt_core::{ActorRef, Error};
use kt_transport::Node;
use kt_transport::node::bulk::{BulkSource, serve_bulk_from};
use kt_transport::wire::sealed_memory::{SealedMemory, WritableMemory};
use std::os::unix::fs::FileExt;
use tokio::sync::OnceCell;

use crate::directory::{Located, Publication, StoreDirectory};
use crate::holder::{HolderAddress, this_host};
use crate::holdings::{Held, Holdings, Origin, Reservation, Usage};
use crate::same_host::{self, Passed, SameHostFailure};
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
        let directory = directory().await?;
        let reservation = self
            .holdings
            .reserve(size as u64, evicted_from(directory, &me))
            .await?;
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
        let in_flight = self.holdings.begin_put(&key);
        let published = directory
            .publish(Publication {
                key: key.clone(),
                size: size as u64,
                kind,
                meta: options.meta,
                put_at_ms: crate::version::now_ms(),
                keep_last: options.keep_last,
                holder: me,
            })
            .await?;
        let held = Held {
            info: published.info.clone(),
            bytes: memory.clone().into_bytes(),
            memory: Some(memory),
            spilled: None,
            origin: Origin::Put,
        };
        self.holdings.insert(held, Some(reservation));
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
        let evicted = evicted_from(directory, &me);
        let mut last_tried = last_lost;
        let mut copy = Copy::default();
        for holder in best_first(holders) {
            let fetched = match holder == me {
                // The directory thinks this process has it, but it does not (any more).
                true => Err(Miss::Holder),
                false => {
                    // Sent now, like every directory call below; nobody waits for the answers.
                    drop(directory.transfer_started(
                        key.clone(),
                        version,
                        me.clone(),
                        holder.clone(),
                    ));
                    self.fetch_from(&holder, &info, &mut copy, &evicted).await
                }
            };
            match fetched {
                Ok(held) => {
                    let reservation = copy.reservation.take();
                    self.holdings.insert(held.clone(), reservation);
                    // Ends the transfer too.
                    drop(directory.add_holder(key.clone(), version, me));
                    return Ok(held);
                }
                Err(Miss::Holder) => {
                    drop(directory.lost(key.clone(), version, holder.clone()));
                    last_tried = Some(holder);
                }
                Err(Miss::Fatal(error)) => {
                    drop(directory.transfer_ended(key.clone(), version, me));
                    return Err(error);
                }
            }
        }
        drop(directory.transfer_ended(key.clone(), version, me));
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
        let me = self.me().await?.clone();
        let mut verified = 0;
        let mut last_tried = last_lost;
        let over = || drop(directory.transfer_ended(key.to_string(), info.version, me.clone()));
        for holder in holders {
            let Ok(address) = holder.node.parse::<SocketAddr>() else {
                continue;
            };
            let from = verified;
            let (getter, source) = (me.clone(), holder.clone());
            drop(directory.transfer_started(key.to_string(), info.version, getter, source));
            match node
                .fetch_into(address, key, info.version.0, from, &mut target[..size])
                .await
            {
                Ok(()) => {
                    traffic::count(key, |t| t.received_over_quic += info.size - from);
                    over();
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
        over();
        Err(holder_lost(key.to_string(), info.version, last_tried))
    }

    /// What this process holds, against its budget.
    pub fn usage(&self) -> Usage {
        self.holdings.usage()
    }

    /// Frees this process's copies of removed versions.
    pub fn forget(&self, key: &str, versions: &[Version]) {
        self.holdings.remove(key, versions);
    }

    /// One holder's copy; `Miss::Holder` when it is gone or has none (the caller tries
    /// the next), `Miss::Fatal` when this process has no room for a copy.
    async fn fetch_from<'a>(
        &'a self,
        holder: &HolderAddress,
        info: &VersionInfo,
        copy: &mut Copy<'a>,
        evicted: &impl Fn(&VersionInfo),
    ) -> Result<Held, Miss> {
        if holder.on_this_host()
            && let Some(socket) = &holder.socket
        {
            match same_host::fetch(socket, &info.key, info.version, info.size).await {
                Ok(Passed::Memfd(memory)) => {
                    traffic::count(&info.key, |t| t.mapped_from_this_host += info.size);
                    return Ok(Held {
                        info: info.clone(),
                        bytes: memory.clone().into_bytes(),
                        memory: Some(memory),
                        spilled: None,
                        origin: Origin::Mapped,
                    });
                }
                // Spilled there: copied into memory of this process's own.
                Ok(Passed::File(file)) => {
                    copy.reserve(&self.holdings, info.size, evicted).await?;
                    let buffer = copy.buffer(info.size as usize)?;
                    std::fs::File::from(file)
                        .read_exact_at(buffer, 0)
                        .map_err(|error| {
                            tracing::debug!("reading a spilled '{}': {error}", info.key);
                            Miss::Holder
                        })?;
                    traffic::count(&info.key, |t| t.mapped_from_this_host += info.size);
                    return copy.seal(info);
                }
                Err(SameHostFailure::Gone(error)) => {
                    tracing::debug!("{error}");
                    return Err(Miss::Holder);
                }
                // It answered but could not pass the memfd: try its QUIC node.
                Err(SameHostFailure::NotHeld(error)) => tracing::debug!("{error}"),
            }
        }
        let address: SocketAddr = holder.node.parse().map_err(|_| Miss::Holder)?;
        let node = Node::global().map_err(|error| Miss::Fatal(error.into()))?;
        copy.reserve(&self.holdings, info.size, evicted).await?;
        let from = copy.verified;
        let buffer = copy.buffer(info.size as usize)?;
        let fetched = node
            .fetch_into(address, &info.key, info.version.0, from, buffer)
            .await;
        let verified = fetched.as_ref().map_or_else(|f| f.verified, |()| info.size);
        traffic::count(&info.key, |t| {
            t.received_over_quic += verified.saturating_sub(from)
        });
        match fetched {
            Ok(()) => copy.seal(info),
            Err(failure) => {
                tracing::debug!(
                    "fetching '{}' {}: {}",
                    info.key,
                    info.version,
                    failure.error
                );
                copy.verified = failure.verified;
                Err(Miss::Holder)
            }
        }
    }
}

/// Why a holder gave no copy.
enum Miss {
    /// It is gone or has none: try the next.
    Holder,
    /// This process cannot take a copy (no room): stop.
    Fatal(Error),
}

/// Tells the directory that this process no longer holds a copy it evicted.
fn evicted_from(
    directory: &'static ActorRef<StoreDirectory>,
    me: &HolderAddress,
) -> impl Fn(&VersionInfo) + use<> {
    let me = me.clone();
    move |info: &VersionInfo| {
        // Sent now; nobody waits for the answer.
        drop(directory.lost(info.key.clone(), info.version, me.clone()));
    }
}

/// A copy being made in this process: memory reserved against the budget, then a memfd
/// filled from a bulk stream (kept across holders, so that a broken transfer resumes at
/// its last verified chunk) or from a spilled holder's file.
#[derive(Default)]
struct Copy<'a> {
    reservation: Option<Reservation<'a>>,
    memory: Option<WritableMemory>,
    verified: u64,
}

impl<'a> Copy<'a> {
    /// Reserves the copy's memory, once.
    async fn reserve(
        &mut self,
        holdings: &'a Holdings,
        size: u64,
        evicted: &impl Fn(&VersionInfo),
    ) -> Result<(), Miss> {
        if self.reservation.is_none() {
            let reservation = holdings.reserve(size, evicted).await.map_err(Miss::Fatal)?;
            self.reservation = Some(reservation);
        }
        Ok(())
    }

    /// The buffer, made on first use.
    fn buffer(&mut self, size: usize) -> Result<&mut [u8], Miss> {
        if self.memory.is_none() {
            let memory = SealedMemory::writable(size).map_err(|error| {
                Miss::Fatal(Error::Unavailable {
                    target: format!("memory for a {size}-byte copy"),
                    message: error.to_string(),
                })
            })?;
            self.memory = Some(memory);
        }
        match &mut self.memory {
            Some(memory) => Ok(memory.as_mut_slice()),
            None => Err(Miss::Holder),
        }
    }

    /// The finished copy.
    fn seal(&mut self, info: &VersionInfo) -> Result<Held, Miss> {
        let memory = self.memory.take().ok_or(Miss::Holder)?;
        let memory = Arc::new(memory.seal().map_err(|error| {
            Miss::Fatal(Error::Unavailable {
                target: format!("a copy of '{}'", info.key),
                message: error.to_string(),
            })
        })?);
        Ok(Held {
            info: info.clone(),
            bytes: memory.clone().into_bytes(),
            memory: Some(memory),
            spilled: None,
            origin: Origin::Copied,
        })
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
