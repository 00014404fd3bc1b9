//! This process's side of the store: its holdings, how other processes reach it, and
//! how a get picks the path to a holder.
//!
//! The paths, best first: the bytes are in this process (no copy, no message); a holder
//! on this host (its memfd over a Unix socket, mapped read-only: no copy); holders
//! elsewhere (bulk streams over QUIC, verified chunk by chunk, ranges of a large value
//! from several holders at once, a broken range resumed at its last good chunk by the
//! holders left: the `ranges` module). A holder found gone is reported to the
//! directory, which forgets it; when none is left the get fails with `HolderLost` at
//! once rather than waiting.

use std::collections::BTreeMap;
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
use crate::ranges::{self, Missing};
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

    fn forget(&self, key: &str, versions: &[u64]) {
        let versions: Vec<Version> = versions.iter().copied().map(Version).collect();
        self.0.remove(key, &versions);
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
        let started = |holder: &HolderAddress| {
            // Sent now, like every directory call below; nobody waits for the answers.
            drop(directory.transfer_started(key.clone(), version, me.clone(), holder.clone()));
        };
        let lost = |holder: &HolderAddress| {
            drop(directory.lost(key.clone(), version, holder.clone()));
        };
        // Holders on this host one by one (a memfd: no copy); the others all at once.
        let mut elsewhere = Vec::new();
        for holder in best_first(holders) {
            if holder == me {
                // The directory thinks this process has it, but it does not (any more).
                lost(&holder);
                last_tried = Some(holder);
                continue;
            }
            let Some(socket) = holder.socket.clone().filter(|_| holder.on_this_host()) else {
                elsewhere.push(holder);
                continue;
            };
            started(&holder);
            match self
                .fetch_on_this_host(&socket, &info, &mut copy, &evicted)
                .await
            {
                Ok(Some(held)) => return Ok(self.keep(held, copy, directory, me)),
                // It answered but could not pass the memfd: try its QUIC node.
                Ok(None) => elsewhere.push(holder),
                Err(Miss::Holder) => {
                    lost(&holder);
                    last_tried = Some(holder);
                }
                Err(Miss::Fatal(error)) => {
                    drop(directory.transfer_ended(key.clone(), version, me));
                    return Err(error);
                }
            }
        }
        if !elsewhere.is_empty() {
            match self
                .fetch_elsewhere(elsewhere, &info, &mut copy, &evicted, started, lost)
                .await
            {
                Ok(held) => return Ok(self.keep(held, copy, directory, me)),
                Err(Miss::Holder) => {}
                Err(Miss::Fatal(error)) => {
                    drop(directory.transfer_ended(key.clone(), version, me));
                    return Err(error);
                }
            }
            last_tried = copy.last_lost.take().or(last_tried);
        }
        drop(directory.transfer_ended(key.clone(), version, me));
        Err(holder_lost(key, version, last_tried))
    }

    /// Keeps a fetched copy in this process's holdings, and tells the directory that this
    /// process holds (and serves) it now.
    fn keep(
        &self,
        held: Held,
        mut copy: Copy<'_>,
        directory: &ActorRef<StoreDirectory>,
        me: HolderAddress,
    ) -> Held {
        self.holdings.insert(held.clone(), copy.reservation.take());
        // Ends the transfers too.
        drop(directory.add_holder(held.info.key.clone(), held.info.version, me));
        held
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
        let mut holders = holders;
        let mut missing = Missing::whole(info.size);
        let started = |holder: &HolderAddress| {
            let (getter, source) = (me.clone(), holder.clone());
            drop(directory.transfer_started(key.to_string(), info.version, getter, source));
        };
        let lost = |holder: &HolderAddress| {
            drop(directory.lost(key.to_string(), info.version, holder.clone()));
        };
        let fetched = ranges::fetch(
            &node,
            &info,
            &mut holders,
            &mut target[..size],
            &mut missing,
            started,
            lost,
        )
        .await;
        drop(directory.transfer_ended(key.to_string(), info.version, me));
        match fetched {
            Ok(()) => Ok(info),
            Err(last) => Err(holder_lost(
                key.to_string(),
                info.version,
                last.or(last_lost),
            )),
        }
    }

    /// What this process holds, against its budget.
    pub fn usage(&self) -> Usage {
        self.holdings.usage()
    }

    /// Frees this process's copies of removed versions.
    pub fn forget(&self, key: &str, versions: &[Version]) {
        self.holdings.remove(key, versions);
    }

    /// A copy from the holder on this host whose store socket is `socket`: its memfd
    /// mapped, or its spilled file read. `Ok(None)` when it answered but could not pass
    /// the memfd (its QUIC node may still serve it); `Miss::Holder` when it is gone or
    /// has none; `Miss::Fatal` when this process has no room for a copy.
    async fn fetch_on_this_host<'a>(
        &'a self,
        socket: &str,
        info: &VersionInfo,
        copy: &mut Copy<'a>,
        evicted: &impl Fn(&VersionInfo),
    ) -> Result<Option<Held>, Miss> {
        match same_host::fetch(socket, &info.key, info.version, info.size).await {
            Ok(Passed::Memfd(memory)) => {
                traffic::count(&info.key, |t| t.mapped_from_this_host += info.size);
                Ok(Some(Held {
                    info: info.clone(),
                    bytes: memory.clone().into_bytes(),
                    memory: Some(memory),
                    spilled: None,
                    origin: Origin::Mapped,
                }))
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
                copy.seal(info).map(Some)
            }
            Err(SameHostFailure::Gone(error)) => {
                tracing::debug!("{error}");
                Err(Miss::Holder)
            }
            Err(SameHostFailure::NotHeld(error)) => {
                tracing::debug!("{error}");
                Ok(None)
            }
        }
    }

    /// A copy from the holders on other hosts, ranges from several at once over QUIC bulk
    /// streams. `Miss::Holder` once every one of them failed (the last is in
    /// `copy.last_lost`); the verified parts stay in `copy`.
    async fn fetch_elsewhere<'a>(
        &'a self,
        mut holders: Vec<HolderAddress>,
        info: &VersionInfo,
        copy: &mut Copy<'a>,
        evicted: &impl Fn(&VersionInfo),
        started: impl Fn(&HolderAddress),
        lost: impl FnMut(&HolderAddress),
    ) -> Result<Held, Miss> {
        let node = Node::global().map_err(|error| Miss::Fatal(error.into()))?;
        copy.reserve(&self.holdings, info.size, evicted).await?;
        let mut missing = copy
            .missing
            .take()
            .unwrap_or_else(|| Missing::whole(info.size));
        let buffer = copy.buffer(info.size as usize)?;
        let fetched = ranges::fetch(
            &node,
            info,
            &mut holders,
            buffer,
            &mut missing,
            started,
            lost,
        )
        .await;
        match fetched {
            Ok(()) => copy.seal(info),
            Err(last) => {
                copy.missing = Some(missing);
                copy.last_lost = last;
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
/// filled from bulk streams (what they verified is kept, so that a broken transfer
/// resumes at its last verified chunk) or from a spilled holder's file.
#[derive(Default)]
struct Copy<'a> {
    reservation: Option<Reservation<'a>>,
    memory: Option<WritableMemory>,
    /// What bulk streams have not verified yet (`None`: nothing fetched so far).
    missing: Option<Missing>,
    /// The last holder a bulk stream lost.
    last_lost: Option<HolderAddress>,
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
