//! The values this process holds: the ones it put (originals) and the copies it fetched
//! and keeps serving (cached), each as the bytes of a sealed memfd or of a buffer.
//!
//! A getter may ask for a version before its putter has recorded it here: the directory
//! hands out a version as soon as the put reaches it, while the putter still waits for
//! the answer. Puts in flight are counted per key, and a lookup of a key with a put in
//! flight waits for it to land instead of answering "not held".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kt_transport::wire::sealed_memory::SealedMemory;
use tokio::sync::Notify;

use crate::version::{Version, VersionInfo};

/// One held value.
#[derive(Clone)]
pub(crate) struct Held {
    /// What the directory recorded.
    pub info: VersionInfo,
    /// The value's bytes (a view of `memory` when there is one).
    pub bytes: Bytes,
    /// The sealed memfd behind `bytes`, passed to getters on this host.
    pub memory: Option<Arc<SealedMemory>>,
}

#[derive(Default)]
struct Table {
    values: HashMap<(String, u64), Held>,
    puts_in_flight: HashMap<String, usize>,
}

/// This process's values.
#[derive(Default)]
pub(crate) struct Holdings {
    table: Mutex<Table>,
    landed: Notify,
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

    /// Keeps `held`.
    pub fn insert(&self, held: Held) {
        let key = (held.info.key.clone(), held.info.version.0);
        self.table().values.insert(key, held);
        self.landed.notify_waiters();
    }

    /// The held value, if this process has it (no waiting).
    pub fn get(&self, key: &str, version: Version) -> Option<Held> {
        self.table()
            .values
            .get(&(key.to_string(), version.0))
            .cloned()
    }

    /// The held value, waiting for puts of `key` in flight to land first.
    pub async fn find(&self, key: &str, version: Version) -> Option<Held> {
        loop {
            let landed = self.landed.notified();
            let mut landed = std::pin::pin!(landed);
            landed.as_mut().enable();
            {
                let table = self.table();
                if let Some(held) = table.values.get(&(key.to_string(), version.0)) {
                    return Some(held.clone());
                }
                if !table.puts_in_flight.contains_key(key) {
                    return None;
                }
            }
            landed.await;
        }
    }

    /// Drops `versions` of `key`.
    pub fn remove(&self, key: &str, versions: &[Version]) {
        let mut table = self.table();
        for version in versions {
            table.values.remove(&(key.to_string(), version.0));
        }
    }

    /// Drops every held version of `key` older than `oldest_kept` (the directory no
    /// longer keeps them).
    pub fn forget_older(&self, key: &str, oldest_kept: Version) {
        self.table()
            .values
            .retain(|(k, version), _| k != key || *version >= oldest_kept.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ValueKind;

    fn held(key: &str, version: u64) -> Held {
        Held {
            info: VersionInfo {
                key: key.into(),
                version: Version(version),
                size: 3,
                kind: ValueKind::Bytes,
                meta: Default::default(),
                put_at_ms: 0,
            },
            bytes: Bytes::from_static(b"abc"),
            memory: None,
        }
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
        holdings.insert(held("w", 1));
        drop(put);
        assert_eq!(finder.await.expect("joined"), Some(Version(1)));
        // With no put in flight a missing version is not held, at once.
        assert!(holdings.find("w", Version(2)).await.is_none());
    }

    #[test]
    fn old_versions_are_forgotten() {
        let holdings = Holdings::default();
        for version in 1..=3 {
            holdings.insert(held("w", version));
        }
        holdings.insert(held("x", 1));
        holdings.forget_older("w", Version(3));
        assert!(holdings.get("w", Version(2)).is_none());
        assert!(holdings.get("w", Version(3)).is_some());
        assert!(holdings.get("x", Version(1)).is_some());
        holdings.remove("w", &[Version(3)]);
        assert!(holdings.get("w", Version(3)).is_none());
    }
}
