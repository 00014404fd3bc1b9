//! The values this process holds — the ones it put (originals) and the copies it got
//! and keeps serving — and what they cost against the process's budget.
//!
//! Memory counts the memfds this process made (its originals, and copies it filled from
//! a bulk stream or a spilled file); a mapping of another process's memfd costs this
//! process nothing. Past the memory budget ([`crate::budget`]), cached copies are
//! dropped first (least recently used first, and the directory is told), then
//! originals are spilled to unlinked files within the disk budget; past both, a put
//! waits for room up to a bound, then fails with `StoreFull`.
//!
//! A getter may ask for a version before its putter has recorded it here: the directory
//! hands out a version as soon as the put reaches it, while the putter still waits for
//! the answer. Puts in flight are counted per key, and a lookup of a key with a put in
//! flight waits for it to land instead of answering "not held".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kt_core::Error;
use kt_transport::wire::sealed_memory::SealedMemory;
use tokio::sync::Notify;

use crate::budget::{Budget, budget};
use crate::spill;
use crate::version::{Version, VersionInfo};

/// Where a held value's bytes came from, which decides what they cost here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Put by this process: an original, spilled rather than dropped.
    Put,
    /// A memfd this process filled (from a bulk stream, or a spilled holder's file): a
    /// cached copy that costs memory here.
    Copied,
    /// A mapping of another process's memfd: a cached copy that costs nothing here.
    Mapped,
}

/// One held value.
#[derive(Clone)]
pub(crate) struct Held {
    /// What the directory recorded.
    pub info: VersionInfo,
    /// The value's bytes (a view of `memory`, or of the spilled file's mapping).
    pub bytes: Bytes,
    /// The sealed memfd behind `bytes`, passed to getters on this host.
    pub memory: Option<Arc<SealedMemory>>,
    /// The unlinked file behind `bytes` once spilled, passed to getters on this host.
    pub spilled: Option<Arc<std::fs::File>>,
    /// Where the bytes came from.
    pub origin: Origin,
}

impl Held {
    /// What the value costs this process: (memory, disk) bytes.
    fn charge(&self) -> (u64, u64) {
        let size = self.info.size;
        match (self.origin, &self.spilled, &self.memory) {
            (_, Some(_), _) => (0, size),
            (Origin::Mapped, _, _) | (_, _, None) => (0, 0),
            _ => (size, 0),
        }
    }
}

/// What this process's store holds, against its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Bytes of memfds held (originals and copies made here) and reserved for puts.
    pub memory_used: u64,
    /// The memory budget (`KT_STORE_MEMORY_BYTES`).
    pub memory_budget: u64,
    /// Bytes of spilled values on disk.
    pub disk_used: u64,
    /// The disk budget (`KT_STORE_DISK_BYTES`).
    pub disk_budget: u64,
    /// Values put here and held (in memory or spilled).
    pub originals: usize,
    /// Of those, how many are spilled to disk.
    pub spilled: usize,
    /// Copies of other processes' values kept here.
    pub cached: usize,
}

struct Slot {
    held: Held,
    last_used: u64,
    /// Being written to disk: not chosen again.
    spilling: bool,
}

#[derive(Default)]
struct Table {
    values: HashMap<(String, u64), Slot>,
    puts_in_flight: HashMap<String, usize>,
    /// Memory promised to puts and copies not inserted yet.
    reserved: u64,
    memory: u64,
    disk: u64,
    /// Disk promised to spills under way.
    disk_reserved: u64,
    tick: u64,
}

impl Table {
    fn add(&mut self, held: Held) {
        let (memory, disk) = held.charge();
        self.memory += memory;
        self.disk += disk;
        self.tick += 1;
        let key = (held.info.key.clone(), held.info.version.0);
        let slot = Slot {
            held,
            last_used: self.tick,
            spilling: false,
        };
        if let Some(old) = self.values.insert(key, slot) {
            self.uncharge(&old.held);
        }
    }

    fn take(&mut self, key: &(String, u64)) -> Option<Held> {
        let slot = self.values.remove(key)?;
        self.uncharge(&slot.held);
        Some(slot.held)
    }

    fn uncharge(&mut self, held: &Held) {
        let (memory, disk) = held.charge();
        self.memory -= memory.min(self.memory);
        self.disk -= disk.min(self.disk);
    }

    fn fits(&self, bytes: u64, budget: &Budget) -> bool {
        self.memory + self.reserved + bytes <= budget.memory
    }

    /// The least recently used cached copy that costs memory.
    fn coldest_copy(&self) -> Option<(String, u64)> {
        self.values
            .iter()
            .filter(|(_, slot)| slot.held.origin == Origin::Copied && slot.held.charge().0 > 0)
            .min_by_key(|(_, slot)| slot.last_used)
            .map(|(key, _)| key.clone())
    }

    /// The least recently used original in memory that fits on disk.
    fn coldest_original(&self, budget: &Budget) -> Option<(String, u64)> {
        self.values
            .iter()
            .filter(|(_, slot)| {
                slot.held.origin == Origin::Put
                    && !slot.spilling
                    && slot.held.charge().0 > 0
                    && self.disk + self.disk_reserved + slot.held.info.size <= budget.disk
            })
            .min_by_key(|(_, slot)| slot.last_used)
            .map(|(key, _)| key.clone())
    }
}

/// Values at least this large are let go on a blocking thread.
const RELEASE_OFF_PATH: u64 = 1 << 20;

/// Lets go of values the store no longer holds. Unmapping a large mapping whose pages
/// were touched takes milliseconds (5–7 ms for 100 MB here), which a get or put that
/// drops an old version must not wait for: large ones go to a blocking thread.
fn release(values: Vec<Held>) {
    let large = values.iter().map(|held| held.info.size).sum::<u64>() >= RELEASE_OFF_PATH;
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if large => drop(runtime.spawn_blocking(move || drop(values))),
        _ => drop(values),
    }
}

/// This process's values.
#[derive(Default)]
pub(crate) struct Holdings {
    table: Mutex<Table>,
    landed: Notify,
    freed: Notify,
}

/// Memory promised to a value being made; given back on drop unless the value is
/// inserted with it.
pub(crate) struct Reservation<'a> {
    holdings: &'a Holdings,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let mut table = self.holdings.table();
        table.reserved -= self.bytes.min(table.reserved);
        drop(table);
        self.holdings.freed.notify_waiters();
    }
}

/// A put on its way to the directory; dropping it ends the wait of lookups of its key.
pub(crate) struct PutInFlight<'a> {
    holdings: &'a Holdings,
    key: String,
}

impl Drop for PutInFlight<'_> {
    fn drop(&mut self) {
        let mut table = self.holdings.table();
        if let Some(count) = table.puts_in_flight.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                table.puts_in_flight.remove(&self.key);
            }
        }
        drop(table);
        self.holdings.landed.notify_waiters();
    }
}

/// What a reservation must do before it can be granted.
enum Step {
    Granted,
    Spill((String, u64), Held),
    Wait,
}

impl Holdings {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Counts a put of `key` as in flight until the guard drops.
    pub fn begin_put(&self, key: &str) -> PutInFlight<'_> {
        *self
            .table()
            .puts_in_flight
            .entry(key.to_string())
            .or_default() += 1;
        PutInFlight {
            holdings: self,
            key: key.to_string(),
        }
    }

    /// Room for `bytes` more of memory: at once if the budget has it; else after
    /// dropping cached copies (each reported to `evicted`, so the directory stops
    /// sending getters here) and spilling originals to disk; else after waiting, up to
    /// the budget's bound, for values to be removed.
    pub async fn reserve(
        &self,
        bytes: u64,
        evicted: impl Fn(&VersionInfo),
    ) -> Result<Reservation<'_>, Error> {
        self.reserve_within(bytes, budget(), evicted).await
    }

    async fn reserve_within(
        &self,
        bytes: u64,
        budget: &Budget,
        evicted: impl Fn(&VersionInfo),
    ) -> Result<Reservation<'_>, Error> {
        let deadline = tokio::time::Instant::now() + budget.full_wait;
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            let mut dropped = Vec::new();
            let step = {
                let mut table = self.table();
                while !table.fits(bytes, budget)
                    && let Some(key) = table.coldest_copy()
                {
                    dropped.extend(table.take(&key));
                }
                if table.fits(bytes, budget) {
                    table.reserved += bytes;
                    Step::Granted
                } else if let Some(key) = table.coldest_original(budget) {
                    match table.values.get_mut(&key) {
                        Some(slot) => {
                            slot.spilling = true;
                            let held = slot.held.clone();
                            table.disk_reserved += held.info.size;
                            Step::Spill(key, held)
                        }
                        None => Step::Wait,
                    }
                } else {
                    Step::Wait
                }
            };
            for held in &dropped {
                evicted(&held.info);
            }
            release(dropped);
            match step {
                Step::Granted => {
                    return Ok(Reservation {
                        holdings: self,
                        bytes,
                    });
                }
                Step::Spill(key, held) => self.spill(key, held, budget).await,
                Step::Wait => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        let table = self.table();
                        return Err(Error::StoreFull {
                            needed: bytes,
                            budget: budget.memory + budget.disk,
                            held: table.memory + table.reserved + table.disk,
                        });
                    }
                }
            }
        }
    }

    /// Writes an original to an unlinked file and holds it from there.
    async fn spill(&self, key: (String, u64), held: Held, budget: &Budget) {
        let dir = budget.spill_dir.clone();
        let bytes = held.bytes.clone();
        let written = tokio::task::spawn_blocking(move || spill::to_file(&dir, &bytes)).await;
        let mut table = self.table();
        table.disk_reserved -= held.info.size.min(table.disk_reserved);
        match written {
            Ok(Ok((file, mapped))) if table.values.contains_key(&key) => {
                let spilled = Held {
                    bytes: mapped,
                    memory: None,
                    spilled: Some(Arc::new(file)),
                    ..held
                };
                table.add(spilled);
                drop(table);
                self.freed.notify_waiters();
            }
            // Removed meanwhile: nothing to keep.
            Ok(Ok(_)) => {}
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    Err(join) => join.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::warn!(
                    "could not spill '{}' {} to {}: {error}; it stays in memory",
                    key.0,
                    held.info.version,
                    budget.spill_dir.display()
                );
                if let Some(slot) = table.values.get_mut(&key) {
                    // Not tried again: its memory is not coming back.
                    slot.spilling = true;
                }
            }
        }
    }

    /// Keeps `held`; its memory comes from `reservation` (none for a mapping).
    pub fn insert(&self, held: Held, reservation: Option<Reservation<'_>>) {
        // Taken before the lock: the emptied reservation's drop must not lock again.
        let reserved = reservation.map_or(0, |mut r| std::mem::take(&mut r.bytes));
        let mut table = self.table();
        table.reserved -= reserved.min(table.reserved);
        table.add(held);
        drop(table);
        self.landed.notify_waiters();
    }

    /// The held value, if this process has it (no waiting).
    pub fn get(&self, key: &str, version: Version) -> Option<Held> {
        let mut table = self.table();
        table.tick += 1;
        let tick = table.tick;
        let slot = table.values.get_mut(&(key.to_string(), version.0))?;
        slot.last_used = tick;
        Some(slot.held.clone())
    }

    /// The held value, waiting for puts of `key` in flight to land first.
    pub async fn find(&self, key: &str, version: Version) -> Option<Held> {
        loop {
            let landed = self.landed.notified();
            let mut landed = std::pin::pin!(landed);
            landed.as_mut().enable();
            if let Some(held) = self.get(key, version) {
                return Some(held);
            }
            if !self.table().puts_in_flight.contains_key(key) {
                return None;
            }
            landed.await;
        }
    }

    /// Drops `versions` of `key`.
    pub fn remove(&self, key: &str, versions: &[Version]) {
        let mut table = self.table();
        let taken: Vec<Held> = versions
            .iter()
            .filter_map(|version| table.take(&(key.to_string(), version.0)))
            .collect();
        drop(table);
        self.freed.notify_waiters();
        release(taken);
    }

    /// Drops every held version of `key` older than `oldest_kept` (the directory no
    /// longer keeps them).
    pub fn forget_older(&self, key: &str, oldest_kept: Version) {
        let mut table = self.table();
        let old: Vec<(String, u64)> = table
            .values
            .keys()
            .filter(|(k, version)| k == key && *version < oldest_kept.0)
            .cloned()
            .collect();
        let taken: Vec<Held> = old.iter().filter_map(|old| table.take(old)).collect();
        drop(table);
        if !taken.is_empty() {
            self.freed.notify_waiters();
        }
        release(taken);
    }

    /// What is held, against the budget.
    pub fn usage(&self) -> Usage {
        let table = self.table();
        let budget = budget();
        let mut usage = Usage {
            memory_used: table.memory + table.reserved,
            memory_budget: budget.memory,
            disk_used: table.disk,
            disk_budget: budget.disk,
            ..Usage::default()
        };
        for slot in table.values.values() {
            match slot.held.origin {
                Origin::Put => usage.originals += 1,
                Origin::Copied | Origin::Mapped => usage.cached += 1,
            }
            usage.spilled += usize::from(slot.held.spilled.is_some());
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ValueKind;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn info(key: &str, version: u64, size: u64) -> VersionInfo {
        VersionInfo {
            key: key.into(),
            version: Version(version),
            size,
            kind: ValueKind::Bytes,
            meta: Default::default(),
            put_at_ms: 0,
        }
    }

    /// A value of `size` bytes in a memfd of this process.
    fn held(key: &str, version: u64, size: usize, origin: Origin) -> Held {
        let memory = Arc::new(SealedMemory::from_slice(&vec![version as u8; size]).unwrap());
        Held {
            info: info(key, version, size as u64),
            bytes: memory.clone().into_bytes(),
            memory: Some(memory),
            spilled: None,
            origin,
        }
    }

    fn budget(memory: u64, disk: u64) -> Budget {
        Budget {
            memory,
            disk,
            spill_dir: std::env::temp_dir(),
            full_wait: Duration::from_millis(50),
        }
    }

    /// Reserves and inserts a value, as a put does.
    async fn put(holdings: &Holdings, budget: &Budget, key: &str, version: u64, size: usize) {
        let reservation = holdings
            .reserve_within(size as u64, budget, |_| {})
            .await
            .unwrap();
        holdings.insert(held(key, version, size, Origin::Put), Some(reservation));
    }

    #[tokio::test]
    async fn a_lookup_waits_for_a_put_of_its_key_in_flight() {
        let holdings = Arc::new(Holdings::default());
        let put = holdings.begin_put("w");
        let finder = {
            let holdings = holdings.clone();
            tokio::spawn(
                async move { holdings.find("w", Version(1)).await.map(|h| h.info.version) },
            )
        };
        // A lookup of another key does not wait.
        assert!(holdings.find("other", Version(1)).await.is_none());
        tokio::task::yield_now().await;
        assert!(!finder.is_finished());
        holdings.insert(held("w", 1, 3, Origin::Put), None);
        drop(put);
        assert_eq!(finder.await.expect("joined"), Some(Version(1)));
        // With no put in flight a missing version is not held, at once.
        assert!(holdings.find("w", Version(2)).await.is_none());
    }

    #[tokio::test]
    async fn old_versions_are_forgotten_and_their_memory_freed() {
        let holdings = Holdings::default();
        let budget = budget(1000, 0);
        for version in 1..=3 {
            put(&holdings, &budget, "w", version, 100).await;
        }
        put(&holdings, &budget, "x", 1, 100).await;
        assert_eq!(holdings.table().memory, 400);
        holdings.forget_older("w", Version(3));
        assert!(holdings.get("w", Version(2)).is_none());
        assert!(holdings.get("w", Version(3)).is_some());
        assert!(holdings.get("x", Version(1)).is_some());
        holdings.remove("w", &[Version(3)]);
        assert!(holdings.get("w", Version(3)).is_none());
        assert_eq!(holdings.table().memory, 100);
    }

    #[tokio::test]
    async fn past_the_budget_cached_copies_go_first_and_the_directory_is_told() {
        let holdings = Holdings::default();
        let budget = budget(300, 0);
        put(&holdings, &budget, "original", 1, 100).await;
        for (version, origin) in [
            (1, Origin::Copied),
            (2, Origin::Copied),
            (3, Origin::Mapped),
        ] {
            let reservation = match origin {
                Origin::Copied => {
                    Some(holdings.reserve_within(100, &budget, |_| {}).await.unwrap())
                }
                _ => None,
            };
            holdings.insert(held("copy", version, 100, origin), reservation);
            // The least recently used copy is "copy" v1: touch v2.
            holdings.get("copy", Version(2));
        }
        let told = std::sync::Mutex::new(Vec::new());
        let reservation = holdings
            .reserve_within(100, &budget, |info| told.lock().unwrap().push(info.version))
            .await
            .unwrap();
        // Room for 100 came from the coldest copy that costs memory; the mapping of
        // another process's memfd costs nothing here and stays.
        assert_eq!(*told.lock().unwrap(), [Version(1)]);
        assert!(holdings.get("copy", Version(1)).is_none());
        assert!(
            holdings.get("copy", Version(2)).is_some()
                && holdings.get("copy", Version(3)).is_some()
        );
        assert!(holdings.get("original", Version(1)).is_some());
        drop(reservation);
        assert_eq!(holdings.usage().memory_used, 200);
    }

    #[tokio::test]
    async fn past_the_memory_budget_originals_spill_to_disk_and_still_read() {
        let holdings = Holdings::default();
        let budget = budget(250, 1000);
        put(&holdings, &budget, "w", 1, 100).await;
        put(&holdings, &budget, "w", 2, 100).await;
        put(&holdings, &budget, "w", 3, 100).await;
        let table = holdings.table();
        assert_eq!((table.memory, table.disk), (200, 100));
        drop(table);
        let spilled = holdings.get("w", Version(1)).unwrap();
        assert!(spilled.spilled.is_some() && spilled.memory.is_none());
        assert_eq!(&spilled.bytes[..], &[1u8; 100][..]);
        let usage = holdings.usage();
        assert_eq!((usage.originals, usage.spilled, usage.cached), (3, 1, 0));
    }

    #[tokio::test]
    async fn past_both_budgets_a_reservation_waits_then_fails_with_store_full() {
        let holdings = Holdings::default();
        let budget = budget(250, 0);
        put(&holdings, &budget, "w", 1, 200).await;
        let error = holdings
            .reserve_within(100, &budget, |_| {})
            .await
            .err()
            .expect("no room");
        match &error {
            Error::StoreFull {
                needed: 100,
                budget: 250,
                held: 200,
            } => {}
            other => panic!("expected StoreFull, got {other:?}"),
        }
        assert!(
            error.to_string().contains("KT_STORE_MEMORY_BYTES"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_waiting_reservation_goes_on_when_a_value_is_removed() {
        let holdings = Arc::new(Holdings::default());
        let budget = Budget {
            full_wait: Duration::from_secs(60),
            ..budget(250, 0)
        };
        put(&holdings, &budget, "w", 1, 200).await;
        let granted = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (holdings, budget, granted) = (holdings.clone(), budget.clone(), granted.clone());
            tokio::spawn(async move {
                let reservation = holdings.reserve_within(100, &budget, |_| {}).await;
                granted.fetch_add(1, Ordering::SeqCst);
                reservation.map(|r| r.bytes)
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(granted.load(Ordering::SeqCst), 0, "there is no room yet");
        holdings.remove("w", &[Version(1)]);
        assert_eq!(waiter.await.unwrap().unwrap(), 100);
    }
}
