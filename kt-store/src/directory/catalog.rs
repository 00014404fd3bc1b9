//! The directory's state: for every key, its versions, and for every version, the
//! processes that hold its bytes. Plain data and plain functions, so every rule of the
//! store (monotonic versions, retention, waiting for a newer version, holders coming and
//! going) is tested here without actors or sockets.

use std::collections::{BTreeMap, HashMap};

use kt_core::Error;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::fan_out::{self, Parent};
use crate::holder::HolderAddress;
use crate::version::{ValueKind, Version, VersionInfo};

/// What a putter tells the directory about a new value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// The key.
    pub key: String,
    /// The value's size in bytes.
    pub size: u64,
    /// How its bytes are read.
    pub kind: ValueKind,
    /// The producer's metadata.
    pub meta: BTreeMap<String, String>,
    /// When it was put (the putter's clock, ms since the epoch).
    pub put_at_ms: u64,
    /// Keep only the newest N versions of the key from now on (`None`: leave as is).
    pub keep_last: Option<usize>,
    /// The process holding the bytes.
    pub holder: HolderAddress,
}

/// The answer to a put: the new version, and the versions the key's retention dropped
/// (the putter frees its own copies of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// The new version's record.
    pub info: VersionInfo,
    /// Versions of the key no longer kept.
    pub dropped: Vec<Version>,
}

/// Copies of a key's versions that the catalog no longer records, by holder: each holder
/// is told to drop them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LetGo {
    /// The key.
    pub key: String,
    /// Each holder and the versions it should drop.
    pub by_holder: Vec<(HolderAddress, Vec<Version>)>,
}

impl LetGo {
    fn add(
        &mut self,
        version: Version,
        holders: Vec<HolderAddress>,
        except: Option<&HolderAddress>,
    ) {
        for holder in holders.into_iter().filter(|h| Some(h) != except) {
            match self.by_holder.iter_mut().find(|(h, _)| *h == holder) {
                Some((_, versions)) => versions.push(version),
                None => self.by_holder.push((holder, vec![version])),
            }
        }
    }
}

/// Where a version's bytes can be fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Located {
    /// The version's record.
    pub info: VersionInfo,
    /// The processes holding it, the original first.
    pub holders: Vec<HolderAddress>,
    /// The oldest version of the key still kept: a holder frees cached copies older
    /// than this.
    pub oldest_kept: Version,
    /// The last holder found gone, for the error when none is left.
    pub last_lost: Option<HolderAddress>,
    /// The sources the directory chose for this getter (holders, or relays still
    /// copying: the fan-out tree), recorded as its transfers; empty when the getter did
    /// not say who it is, or has a holder on its host.
    pub parents: Vec<Parent>,
}

/// One key in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyListing {
    /// The key.
    pub key: String,
    /// Its kept versions, oldest first.
    pub versions: Vec<VersionListing>,
    /// Callers waiting for a version newer than the newest.
    pub waiting: usize,
}

/// One kept version in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionListing {
    /// The version's record.
    pub info: VersionInfo,
    /// How many processes hold its bytes.
    pub holders: usize,
    /// Its bytes on their way to getters now.
    pub transfers: Vec<Transfer>,
}

/// A getter copying a version's bytes from a holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The getter.
    pub to: HolderAddress,
    /// The holder it copies from.
    pub from: HolderAddress,
    /// When it started (the directory's clock, ms since the epoch).
    pub started_ms: u64,
    /// True when the directory placed the getter in the fan-out: it serves its copy on
    /// while it grows (a relay). Copies into a caller's buffer and fallbacks are not.
    #[serde(default)]
    pub relay: bool,
}

/// Which versions `rm` removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versions {
    /// Every version (the key's version counter is kept: versions are never reused).
    All,
    /// These versions.
    Only(Vec<Version>),
    /// Every version older than this one.
    OlderThan(Version),
}

struct Record {
    info: VersionInfo,
    holders: Vec<HolderAddress>,
    last_lost: Option<HolderAddress>,
    /// Copies under way, one per getter.
    transfers: Vec<Transfer>,
}

impl Record {
    fn forget(&mut self, gone: impl Fn(&HolderAddress) -> bool) {
        if let Some(index) = self.holders.iter().rposition(&gone) {
            self.last_lost = Some(self.holders[index].clone());
        }
        self.holders.retain(|holder| !gone(holder));
        self.transfers
            .retain(|transfer| !gone(&transfer.to) && !gone(&transfer.from));
    }
}

#[derive(Default)]
struct KeyEntry {
    /// The last version handed out (versions of removed values are not handed out again).
    last: u64,
    keep_last: Option<usize>,
    versions: BTreeMap<u64, Record>,
    /// Callers waiting for a version newer than theirs: that version, who they are (to
    /// place them in the fan-out), where to answer.
    waiters: Vec<(u64, Option<HolderAddress>, oneshot::Sender<Located>)>,
}

impl KeyEntry {
    /// Where `version` is, with sources chosen for `getter` (and recorded as its
    /// transfers) when it says who it is.
    fn located(&mut self, version: u64, getter: Option<&HolderAddress>) -> Option<Located> {
        let oldest_kept = self.oldest_kept();
        let record = self.versions.get_mut(&version)?;
        let parents = match getter {
            Some(getter) => {
                // A getter asking again starts over: its earlier transfers are over.
                record.transfers.retain(|t| &t.to != getter);
                let parents = fan_out::choose(&record.holders, &record.transfers, getter);
                let started_ms = crate::version::now_ms();
                record
                    .transfers
                    .extend(parents.iter().map(|parent| Transfer {
                        to: getter.clone(),
                        from: parent.holder.clone(),
                        started_ms,
                        relay: true,
                    }));
                parents
            }
            None => Vec::new(),
        };
        Some(Located {
            info: record.info.clone(),
            holders: record.holders.clone(),
            oldest_kept,
            last_lost: record.last_lost.clone(),
            parents,
        })
    }

    fn oldest_kept(&self) -> Version {
        Version(
            self.versions
                .keys()
                .next()
                .copied()
                .unwrap_or(self.last + 1),
        )
    }

    fn kept(&self) -> String {
        match (
            self.versions.keys().next(),
            self.versions.keys().next_back(),
        ) {
            (Some(first), Some(last)) if first == last => format!("{first} only"),
            (Some(first), Some(last)) => format!("{first}..={last}"),
            _ => "none".into(),
        }
    }

    /// Drops the oldest versions past the retention; returns them and their holders.
    fn apply_retention(&mut self) -> Vec<(Version, Vec<HolderAddress>)> {
        let Some(keep) = self.keep_last else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        while self.versions.len() > keep.max(1) {
            if let Some((version, record)) = self.versions.pop_first() {
                dropped.push((Version(version), record.holders));
            }
        }
        dropped
    }
}

/// Every key the directory knows.
#[derive(Default)]
pub struct Catalog {
    keys: HashMap<String, KeyEntry>,
}

/// A `wait_newer` either has its answer now or waits for the next put.
pub enum Newer {
    /// A newer version exists.
    Now(Box<Located>),
    /// Resolves at the next put of the key.
    Later(oneshot::Receiver<Located>),
}

impl Catalog {
    /// Records a new version held by the putter; answers waiters; applies retention, whose
    /// dropped copies other than the putter's are let go.
    pub fn publish(&mut self, publication: Publication) -> (Published, LetGo) {
        let entry = self.keys.entry(publication.key.clone()).or_default();
        entry.last += 1;
        if publication.keep_last.is_some() {
            entry.keep_last = publication.keep_last;
        }
        let info = VersionInfo {
            key: publication.key,
            version: Version(entry.last),
            size: publication.size,
            kind: publication.kind,
            meta: publication.meta,
            put_at_ms: publication.put_at_ms,
        };
        entry.versions.insert(
            entry.last,
            Record {
                info: info.clone(),
                holders: vec![publication.holder.clone()],
                last_lost: None,
                transfers: Vec::new(),
            },
        );
        let mut let_go = LetGo {
            key: info.key.clone(),
            by_holder: Vec::new(),
        };
        let mut dropped = Vec::new();
        for (version, holders) in entry.apply_retention() {
            let_go.add(version, holders, Some(&publication.holder));
            dropped.push(version);
        }
        let newest = entry.last;
        for (_, getter, waiter) in std::mem::take(&mut entry.waiters) {
            // A waiter that went away (its caller gave up) just misses it.
            if !waiter.is_closed()
                && let Some(located) = entry.located(newest, getter.as_ref())
                && waiter.send(located).is_err()
                && let Some(getter) = getter
                && let Some(record) = entry.versions.get_mut(&newest)
            {
                // It went away meanwhile: it copies nothing.
                record.transfers.retain(|t| t.to != getter);
            }
        }
        (Published { info, dropped }, let_go)
    }

    /// The newest version of `key`, or `version` of it.
    pub fn locate(
        &mut self,
        key: &str,
        version: Option<Version>,
        getter: Option<&HolderAddress>,
    ) -> Result<Located, Error> {
        let entry = self
            .keys
            .get_mut(key)
            .filter(|entry| entry.last > 0)
            .ok_or_else(|| not_found(key))?;
        let wanted = match version {
            Some(version) => version.0,
            None => match entry.versions.keys().next_back() {
                Some(newest) => *newest,
                None => return Err(not_found(key)),
            },
        };
        let kept = entry.kept();
        entry
            .located(wanted, getter)
            .ok_or_else(|| Error::VersionGone {
                key: key.to_string(),
                version: wanted,
                kept,
            })
    }

    /// The newest version of `key` if it is newer than `after`, or a receiver that
    /// resolves at the next put.
    pub fn wait_newer(
        &mut self,
        key: &str,
        after: Version,
        getter: Option<&HolderAddress>,
    ) -> Newer {
        let entry = self.keys.entry(key.to_string()).or_default();
        if let Some((&newest, _)) = entry.versions.last_key_value()
            && newest > after.0
            && let Some(located) = entry.located(newest, getter)
        {
            return Newer::Now(Box::new(located));
        }
        let (tx, rx) = oneshot::channel();
        entry.waiters.retain(|(_, _, waiter)| !waiter.is_closed());
        entry.waiters.push((after.0, getter.cloned(), tx));
        Newer::Later(rx)
    }

    fn record_mut(&mut self, key: &str, version: Version) -> Option<&mut Record> {
        self.keys
            .get_mut(key)
            .and_then(|entry| entry.versions.get_mut(&version.0))
    }

    /// Records one more holder of a version (a getter that keeps its copy); its transfer
    /// is over.
    pub fn add_holder(&mut self, key: &str, version: Version, holder: HolderAddress) {
        if let Some(record) = self.record_mut(key, version) {
            record.transfers.retain(|transfer| transfer.to != holder);
            if !record.holders.contains(&holder) {
                record.holders.push(holder);
            }
        }
    }

    /// Records that `transfer.to` copies a version (or a range of it) from
    /// `transfer.from` now. A transfer from a holder found gone ends with [`Self::lost`].
    pub fn transfer_started(&mut self, key: &str, version: Version, transfer: Transfer) {
        if let Some(record) = self.record_mut(key, version) {
            // A getter may copy ranges from several holders at once: one record for each.
            record
                .transfers
                .retain(|t| t.to != transfer.to || t.from != transfer.from);
            record.transfers.push(transfer);
        }
    }

    /// `getter`'s copy of a version is over without it becoming a holder (it failed, or
    /// went into a buffer of the caller's).
    pub fn transfer_ended(&mut self, key: &str, version: Version, getter: &HolderAddress) {
        if let Some(record) = self.record_mut(key, version) {
            record.transfers.retain(|t| &t.to != getter);
        }
    }

    /// Forgets a holder of a version that a getter found gone; returns the holders left.
    pub fn lost(&mut self, key: &str, version: Version, holder: &HolderAddress) -> usize {
        match self
            .keys
            .get_mut(key)
            .and_then(|entry| entry.versions.get_mut(&version.0))
        {
            Some(record) => {
                record.forget(|h| h == holder);
                record.holders.len()
            }
            None => 0,
        }
    }

    /// Forgets every holding of the process whose node is at `node`: it is gone.
    pub fn holder_gone(&mut self, node: &str) {
        for entry in self.keys.values_mut() {
            for record in entry.versions.values_mut() {
                record.forget(|h| h.node == node);
            }
        }
    }

    /// Removes versions of `key`; returns those removed.
    pub fn remove(&mut self, key: &str, which: &Versions) -> Result<(Vec<Version>, LetGo), Error> {
        let entry = self
            .keys
            .get_mut(key)
            .filter(|entry| entry.last > 0)
            .ok_or_else(|| not_found(key))?;
        let removed: Vec<u64> = match which {
            Versions::All => entry.versions.keys().copied().collect(),
            Versions::Only(versions) => versions
                .iter()
                .map(|v| v.0)
                .filter(|v| entry.versions.contains_key(v))
                .collect(),
            Versions::OlderThan(newest) => {
                entry.versions.range(..newest.0).map(|(v, _)| *v).collect()
            }
        };
        let mut let_go = LetGo {
            key: key.to_string(),
            by_holder: Vec::new(),
        };
        for version in &removed {
            if let Some(record) = entry.versions.remove(version) {
                let_go.add(Version(*version), record.holders, None);
            }
        }
        Ok((removed.into_iter().map(Version).collect(), let_go))
    }

    /// Every key starting with `prefix` that has kept versions, sorted.
    pub fn list(&self, prefix: &str) -> Vec<KeyListing> {
        let mut listing: Vec<KeyListing> = self
            .keys
            .iter()
            .filter(|(key, entry)| key.starts_with(prefix) && !entry.versions.is_empty())
            .map(|(key, entry)| KeyListing {
                key: key.clone(),
                versions: entry
                    .versions
                    .values()
                    .map(|record| VersionListing {
                        info: record.info.clone(),
                        holders: record.holders.len(),
                        transfers: record.transfers.clone(),
                    })
                    .collect(),
                waiting: entry
                    .waiters
                    .iter()
                    .filter(|(_, _, w)| !w.is_closed())
                    .count(),
            })
            .collect();
        listing.sort_by(|a, b| a.key.cmp(&b.key));
        listing
    }
}

fn not_found(key: &str) -> Error {
    Error::KeyNotFound {
        key: key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(n: u16) -> HolderAddress {
        HolderAddress::for_tests(n)
    }

    fn put(catalog: &mut Catalog, key: &str, keep_last: Option<usize>, by: u16) -> Published {
        put_letting_go(catalog, key, keep_last, by).0
    }

    fn put_letting_go(
        catalog: &mut Catalog,
        key: &str,
        keep_last: Option<usize>,
        by: u16,
    ) -> (Published, LetGo) {
        catalog.publish(Publication {
            key: key.into(),
            size: 8,
            kind: ValueKind::Bytes,
            meta: BTreeMap::from([("step".to_string(), "1".to_string())]),
            put_at_ms: 0,
            keep_last,
            holder: holder(by),
        })
    }

    #[test]
    fn versions_grow_by_one_per_put_and_are_never_reused() {
        let mut catalog = Catalog::default();
        assert_eq!(put(&mut catalog, "w", None, 1).info.version, Version(1));
        assert_eq!(put(&mut catalog, "w", None, 1).info.version, Version(2));
        assert_eq!(put(&mut catalog, "other", None, 1).info.version, Version(1));
        catalog.remove("w", &Versions::All).expect("removed");
        assert!(matches!(
            catalog.locate("w", None, None),
            Err(Error::KeyNotFound { .. })
        ));
        assert_eq!(put(&mut catalog, "w", None, 1).info.version, Version(3));
        let newest = catalog.locate("w", None, None).expect("found");
        assert_eq!(newest.info.version, Version(3));
        assert_eq!(newest.info.meta("step"), Some("1"));
        assert_eq!(newest.holders, vec![holder(1)]);
    }

    #[test]
    fn retention_keeps_the_newest_versions_and_says_which_went() {
        let mut catalog = Catalog::default();
        put(&mut catalog, "w", Some(2), 1);
        put(&mut catalog, "w", None, 1);
        // A getter holds a copy of version 1 too.
        catalog.add_holder("w", Version(1), holder(2));
        let (third, let_go) = put_letting_go(&mut catalog, "w", None, 1);
        assert_eq!(third.dropped, vec![Version(1)]);
        // The getter is told to drop its copy; the putter drops its own when answered.
        assert_eq!(let_go.by_holder, [(holder(2), vec![Version(1)])]);
        let error = catalog
            .locate("w", Some(Version(1)), None)
            .expect_err("dropped");
        match &error {
            Error::VersionGone {
                version: 1, kept, ..
            } => assert_eq!(kept, "2..=3"),
            other => panic!("expected VersionGone, got {other:?}"),
        }
        assert!(error.to_string().contains("keep_last"), "{error}");
        assert_eq!(
            catalog.locate("w", None, None).expect("found").oldest_kept,
            Version(2)
        );
    }

    #[test]
    fn a_waiter_is_answered_by_the_next_put_and_not_before() {
        let mut catalog = Catalog::default();
        let Newer::Later(mut first) = catalog.wait_newer("w", Version::NONE, None) else {
            panic!("nothing is published yet");
        };
        assert!(first.try_recv().is_err());
        put(&mut catalog, "w", None, 1);
        assert_eq!(first.try_recv().expect("answered").info.version, Version(1));
        // A version newer than the one the caller has is answered at once.
        let Newer::Now(now) = catalog.wait_newer("w", Version::NONE, None) else {
            panic!("v1 is newer than none");
        };
        assert_eq!(now.info.version, Version(1));
        let Newer::Later(mut second) = catalog.wait_newer("w", Version(1), None) else {
            panic!("v1 is not newer than v1");
        };
        assert_eq!(catalog.list("").first().map(|k| k.waiting), Some(1));
        put(&mut catalog, "w", None, 1);
        assert_eq!(
            second.try_recv().expect("answered").info.version,
            Version(2)
        );
    }

    #[test]
    fn holders_come_and_go() {
        let mut catalog = Catalog::default();
        put(&mut catalog, "w", None, 1);
        catalog.add_holder("w", Version(1), holder(2));
        catalog.add_holder("w", Version(1), holder(2));
        assert_eq!(
            catalog.locate("w", None, None).expect("found").holders,
            vec![holder(1), holder(2)]
        );
        assert_eq!(catalog.lost("w", Version(1), &holder(1)), 1);
        catalog.holder_gone(&holder(2).node);
        let located = catalog.locate("w", None, None).expect("found");
        assert!(located.holders.is_empty());
        assert_eq!(located.last_lost, Some(holder(2)));
    }

    #[test]
    fn rm_removes_what_it_is_asked_to() {
        let mut catalog = Catalog::default();
        for _ in 0..4 {
            put(&mut catalog, "w", None, 1);
        }
        catalog.add_holder("w", Version(3), holder(2));
        assert_eq!(
            catalog
                .remove("w", &Versions::Only(vec![Version(2), Version(9)]))
                .expect("rm")
                .0,
            vec![Version(2)]
        );
        let (removed, let_go) = catalog
            .remove("w", &Versions::OlderThan(Version(4)))
            .expect("rm");
        assert_eq!(removed, vec![Version(1), Version(3)]);
        // Every holder of a removed version is told which of its copies to drop.
        assert_eq!(
            let_go.by_holder,
            [
                (holder(1), vec![Version(1), Version(3)]),
                (holder(2), vec![Version(3)])
            ]
        );
        let listed = catalog.list("w");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].versions.len(), 1);
        assert!(matches!(
            catalog.remove("nope", &Versions::All),
            Err(Error::KeyNotFound { .. })
        ));
    }

    #[test]
    fn listing_filters_by_prefix_and_sorts() {
        let mut catalog = Catalog::default();
        for key in ["b/x", "a/y", "a/x", "c"] {
            put(&mut catalog, key, None, 1);
        }
        let keys: Vec<String> = catalog.list("a/").into_iter().map(|k| k.key).collect();
        assert_eq!(keys, ["a/x", "a/y"]);
    }

    #[test]
    fn transfers_are_listed_until_the_getter_holds_the_bytes_or_gives_up() {
        let mut catalog = Catalog::default();
        put(&mut catalog, "w", None, 1);
        let transfer = |to: u16, from: u16| Transfer {
            to: holder(to),
            from: holder(from),
            started_ms: 5,
            relay: false,
        };
        catalog.transfer_started("w", Version(1), transfer(2, 1));
        catalog.transfer_started("w", Version(1), transfer(3, 1));
        catalog.add_holder("w", Version(1), holder(3));
        // Getter 2 copies ranges from holders 1 and 3 at once (told twice of one: listed once).
        catalog.transfer_started("w", Version(1), transfer(2, 3));
        catalog.transfer_started("w", Version(1), transfer(2, 1));
        let listed = &catalog.list("w")[0].versions[0];
        assert_eq!(listed.transfers, [transfer(2, 3), transfer(2, 1)]);
        // Holder 1 fails getter 2, which goes on with holder 3 alone.
        assert_eq!(catalog.lost("w", Version(1), &holder(1)), 1);
        catalog.add_holder("w", Version(1), holder(1));
        catalog.transfer_ended("w", Version(1), &holder(9));
        let listed = &catalog.list("w")[0].versions[0];
        assert_eq!(
            (listed.holders, &listed.transfers[..]),
            (2, &[transfer(2, 3)][..])
        );
        // The holder it copies from is gone: so is the transfer.
        catalog.holder_gone(&holder(3).node);
        assert!(catalog.list("w")[0].versions[0].transfers.is_empty());
    }
}
