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

use futures_util::future::BoxFuture;
use kt_core::{ActorRef, Error};
use kt_transport::Node;
use kt_transport::node::bulk::{BulkSource, Served, serve_bulk_from};
use kt_transport::wire::sealed_memory::{SealedMemory, WritableMemory};
use std::os::unix::fs::FileExt;
use tokio::sync::OnceCell;

use crate::directory::{Located, Parent, Publication, StoreDirectory};
use crate::holder::{HolderAddress, same_host_path, this_host};
use crate::holdings::{Held, Holdings, Origin, Reservation, Usage};
use crate::ranges::{self, Missing};
use crate::relay::{self, Growing, Relaying, SharedGrowing};
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
    /// Copies this process is receiving, served on to the getters below it.
    relaying: Arc<Relaying>,
    me: OnceCell<HolderAddress>,
}

static STORE: LazyLock<Store> = LazyLock::new(|| Store {
    holdings: Arc::default(),
    relaying: Arc::default(),
    me: OnceCell::new(),
});

/// This process's store.
pub(crate) fn store() -> &'static Store {
    &STORE
}

/// Serves held bytes, and copies still arriving, on this process's bulk streams.
struct Source(Arc<Holdings>, Arc<Relaying>);

impl BulkSource for Source {
    fn sent(&self, key: &str, bytes: u64) {
        traffic::count(key, |t| t.sent_over_quic += bytes);
    }

    fn forget(&self, key: &str, versions: &[u64]) {
        let versions: Vec<Version> = versions.iter().copied().map(Version).collect();
        self.0.remove(key, &versions);
    }

    fn open(
        &self,
        key: String,
        version: u64,
        relay: bool,
    ) -> BoxFuture<'static, Result<Served, Error>> {
        let (holdings, relaying) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            // A relay's getter may ask before the relay's own copy started (both learned
            // of it from the same answer of the directory): it waits for the copy to
            // start, or to be held by other means (mapped from a holder on this host).
            let deadline = tokio::time::Instant::now() + relay::START_WITHIN;
            loop {
                let changed = relaying.changed();
                if let Some(held) = holdings.find(&key, Version(version)).await {
                    return Ok(Served::Whole(held.bytes));
                }
                if let Some(growing) = relaying.find(&key, version) {
                    return Ok(Served::Growing(Arc::new(SharedGrowing(growing))));
                }
                // Only a relay's getter waits: a holder that has no copy says so at once.
                if !relay || tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return Err(Error::VersionGone {
                        key,
                        version,
                        kept: "none in this process".into(),
                    });
                }
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
                serve_bulk_from(Arc::new(Source(
                    self.holdings.clone(),
                    self.relaying.clone(),
                )));
                // With the same-host path off, this process neither maps nor passes
                // memfds: it announces no socket, and the directory treats it as a
                // process of another host.
                let socket = match same_host_path()
                    .then(|| same_host::serve(self.holdings.clone(), node.runtime()))
                {
                    Some(Ok(name)) => Some(name),
                    Some(Err(error)) => {
                        tracing::warn!("{error}; getters on this host will use QUIC");
                        None
                    }
                    None => None,
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
        let me = self.me().await?.clone();
        let located = directory()
            .await?
            .locate(key.to_string(), version, Some(me))
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
        let me = self.me().await?.clone();
        let located = directory()
            .await?
            .wait_newer(key.to_string(), after, timeout_ms, Some(me))
            .await??;
        self.fetch(located).await
    }

    /// The located version's bytes: held here, or fetched (and kept, so that this
    /// process serves them too) from a holder on this host, else from the sources the
    /// directory chose (relays of the fan-out among them), else from every holder on
    /// other hosts.
    async fn fetch(&self, located: Located) -> Result<Held, Error> {
        let Located {
            info,
            holders,
            oldest_kept,
            last_lost,
            parents,
        } = located;
        let (key, version) = (info.key.clone(), info.version);
        self.holdings.forget_older(&key, oldest_kept);
        let me = self.me().await?.clone();
        let directory = directory().await?;
        if let Some(held) = self.holdings.get(&key, version) {
            if !parents.is_empty() {
                drop(directory.transfer_ended(key.clone(), version, me));
            }
            return Ok(held);
        }
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
        // Holders on this host one by one (a memfd: no copy); the others in ranges.
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
        // The directory's choice first (already recorded as transfers), then the holders
        // it did not choose.
        let others: Vec<Parent> = elsewhere
            .into_iter()
            .filter(|holder| !parents.iter().any(|parent| &parent.holder == holder))
            .map(|holder| Parent {
                holder,
                relay: false,
            })
            .collect();
        for (sources, chosen) in [(parents, true), (others, false)] {
            if sources.is_empty() {
                continue;
            }
            let started = |holder: &HolderAddress| {
                if !chosen {
                    started(holder);
                }
            };
            match self
                .fetch_elsewhere(sources, &info, &mut copy, &evicted, started, lost)
                .await
            {
                Ok(held) => return Ok(self.keep(held, copy, directory, me)),
                Err(Miss::Holder) => last_tried = copy.last_lost.take().or(last_tried),
                Err(Miss::Fatal(error)) => {
                    copy.abandon(&self.relaying, &info, error.clone());
                    drop(directory.transfer_ended(key.clone(), version, me));
                    return Err(error);
                }
            }
        }
        let error = holder_lost(key.clone(), version, last_tried);
        copy.abandon(&self.relaying, &info, error.clone());
        drop(directory.transfer_ended(key, version, me));
        Err(error)
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
        // The holdings serve it now (getters waiting for it hear so); getters still
        // reading the copy as it grew keep their handle on it.
        copy.growing = None;
        self.relaying.end(&held.info.key, held.info.version.0);
        // Ends the transfers too.
        drop(directory.add_holder(held.info.key.clone(), held.info.version, me));
        held
    }

    /// Copies the newest version of `key` into `target`: out of the mapping when it is
    /// held on this host, else straight from a holder's bulk stream into `target`.
    pub async fn get_into(&self, key: &str, target: &mut [u8]) -> Result<VersionInfo, Error> {
        check_key(key)?;
        // Not a relay: the bytes go into the caller's buffer, which serves nobody.
        let located = directory()
            .await?
            .locate(key.to_string(), None, None)
            .await??;
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
        let mut sources: Vec<Parent> = holders
            .into_iter()
            .map(|holder| Parent {
                holder,
                relay: false,
            })
            .collect();
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
            &mut sources,
            &mut target[..size],
            &mut missing,
            started,
            lost,
            &|_| {},
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
                copy.allocate(info.size as usize).await?;
                // Read off the runtime's threads, like the allocation: a large file
                // would stall every connection of this process meanwhile.
                let mut memory = copy.memory.take().ok_or(Miss::Holder)?;
                let (memory, read) = tokio::task::spawn_blocking(move || {
                    let read = std::fs::File::from(file).read_exact_at(memory.as_mut_slice(), 0);
                    (memory, read)
                })
                .await
                .map_err(|error| Miss::Fatal(unavailable_memory(info.size, &error)))?;
                copy.memory = Some(memory);
                read.map_err(|error| {
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

    /// A copy from `sources` (holders on other hosts, relays), ranges from several at
    /// once over QUIC bulk streams, served on to the getters below this one as its
    /// chunks are verified. `Miss::Holder` once every source failed (the last is in
    /// `copy.last_lost`); the verified parts stay in `copy`.
    async fn fetch_elsewhere<'a>(
        &'a self,
        mut sources: Vec<Parent>,
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
        copy.allocate(info.size as usize).await?;
        let growing = copy.relay(&self.relaying, info);
        let verified = |range: std::ops::Range<u64>| {
            if let Some(growing) = &growing {
                growing.verified(range);
            }
        };
        let buffer = copy.buffer()?;
        let fetched = ranges::fetch(
            &node,
            info,
            &mut sources,
            buffer,
            &mut missing,
            started,
            lost,
            &verified,
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

/// No memory could be had for a copy of `size` bytes.
fn unavailable_memory(size: u64, error: &dyn std::fmt::Display) -> Error {
    Error::Unavailable {
        target: format!("memory for a {size}-byte copy"),
        message: error.to_string(),
    }
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
    /// The copy as getters below this one read it while it grows.
    growing: Option<Arc<Growing>>,
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

    /// Makes the buffer of a `size`-byte copy, unless it exists. Off the runtime's
    /// threads: a memfd's pages are populated as it is made, which for a gigabyte (and
    /// several getters at once) takes long enough to stall every connection of this
    /// process until they time out.
    async fn allocate(&mut self, size: usize) -> Result<(), Miss> {
        if self.memory.is_none() {
            let made = tokio::task::spawn_blocking(move || SealedMemory::writable(size))
                .await
                .map_err(|error| Miss::Fatal(unavailable_memory(size as u64, &error)))?;
            let memory =
                made.map_err(|error| Miss::Fatal(unavailable_memory(size as u64, &error)))?;
            self.memory = Some(memory);
        }
        Ok(())
    }

    /// The buffer [`allocate`](Self::allocate) made.
    fn buffer(&mut self) -> Result<&mut [u8], Miss> {
        match &mut self.memory {
            Some(memory) => Ok(memory.as_mut_slice()),
            None => Err(Miss::Holder),
        }
    }

    /// Serves the copy on while it grows (once: a second attempt goes on with the same
    /// copy); `None` when its pages cannot be viewed (it is then served once complete).
    fn relay(&mut self, relaying: &Relaying, info: &VersionInfo) -> Option<Arc<Growing>> {
        if self.growing.is_none()
            && let Some(memory) = &self.memory
        {
            match memory.reader() {
                Ok(view) => {
                    let growing = Growing::new(view);
                    relaying.start(&info.key, info.version.0, growing.clone());
                    self.growing = Some(growing);
                }
                Err(error) => tracing::debug!("not relaying '{}': {error}", info.key),
            }
        }
        self.growing.clone()
    }

    /// The copy will not be finished: the getters reading it as it grew go elsewhere.
    fn abandon(&mut self, relaying: &Relaying, info: &VersionInfo, error: Error) {
        if let Some(growing) = self.growing.take() {
            growing.fail(error);
            relaying.end(&info.key, info.version.0);
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
