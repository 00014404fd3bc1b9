//! The directory: one actor per driver session that knows, for every key, its versions
//! and who holds them — never the bytes themselves.
//!
//! It lives in the driver process (an in-process actor there, exported on the driver's
//! node like any handle that travels), and every worker the driver starts inherits its
//! address (the `session` module). It holds no bytes: those stay with their holders. A
//! directory that is lost is not rebuilt yet; its session's values cannot be found until
//! they are put again.
//!
//! Its methods take `&self` and run concurrently, so that callers waiting for a newer
//! version ([`StoreDirectory::wait_newer`]) never hold up puts; each method holds the
//! catalog's lock only for a few map operations.

mod catalog;
mod fan_out;
mod let_go;

use std::sync::Mutex;
use std::time::Duration;

use kt_core::Error;

pub use catalog::{
    Catalog, KeyListing, Located, Newer, Publication, Published, Transfer, VersionListing, Versions,
};
pub use fan_out::{FANOUT_ENV, Parent};

use crate::holder::HolderAddress;
use crate::version::Version;

/// How many calls the directory runs at once: callers blocked in `wait_newer` each take
/// one, and puts must never queue behind them.
pub(crate) const DIRECTORY_CONCURRENCY: usize = 1 << 20;

/// The store's directory actor.
#[kt_macros::actor(name = "kt.store.Directory")]
pub struct StoreDirectory {
    catalog: Mutex<Catalog>,
}

#[kt_macros::actor]
impl StoreDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        StoreDirectory {
            catalog: Mutex::new(Catalog::default()),
        }
    }

    /// Records a new version; answers the callers waiting for one. Holders of versions its
    /// retention dropped are told to let them go (the put does not wait for them).
    pub async fn publish(&self, publication: Publication) -> Published {
        let (published, let_go) = self.catalog().publish(publication);
        if !let_go.by_holder.is_empty() {
            tokio::spawn(let_go::tell_holders(let_go));
        }
        published
    }

    /// Where the newest version of `key` (or `version` of it) is held, and, for a
    /// `getter` that says who it is, the sources it should copy from (the fan-out tree).
    pub async fn locate(
        &self,
        key: String,
        version: Option<Version>,
        getter: Option<HolderAddress>,
    ) -> Result<Located, Error> {
        self.catalog().locate(&key, version, getter.as_ref())
    }

    /// Resolves with the newest version of `key` once it is newer than `after`: at once
    /// if it already is, else at the next put; fails with `Timeout` after `timeout_ms`.
    pub async fn wait_newer(
        &self,
        key: String,
        after: Version,
        timeout_ms: Option<u64>,
        getter: Option<HolderAddress>,
    ) -> Result<Located, Error> {
        let waiting = match self.catalog().wait_newer(&key, after, getter.as_ref()) {
            Newer::Now(located) => return Ok(*located),
            Newer::Later(waiting) => waiting,
        };
        let timeout = |waited_ms| Error::Timeout {
            operation: format!("waiting for a version of '{key}' newer than {after}"),
            waited_ms,
            advice: "Check that its producer is running and putting new versions, or wait \
                     longer"
                .into(),
        };
        let answered = match timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), waiting)
                .await
                .map_err(|_| timeout(ms))?,
            None => waiting.await,
        };
        // The catalog drops a waiter's sender only when the directory itself goes.
        answered.map_err(|_| Error::Unavailable {
            target: "the store's directory".into(),
            message: format!("it stopped while a caller waited for a version of '{key}'"),
        })
    }

    /// Records a getter that keeps its copy of a version and serves it to others.
    pub async fn add_holder(&self, key: String, version: Version, holder: HolderAddress) {
        self.catalog().add_holder(&key, version, holder);
    }

    /// `getter` copies a version from `from` now (listed by `kt store ls`).
    pub async fn transfer_started(
        &self,
        key: String,
        version: Version,
        getter: HolderAddress,
        from: HolderAddress,
    ) {
        let transfer = Transfer {
            to: getter,
            from,
            started_ms: crate::version::now_ms(),
            relay: false,
        };
        self.catalog().transfer_started(&key, version, transfer);
    }

    /// `getter`'s copy of a version is over without it becoming a holder.
    pub async fn transfer_ended(&self, key: String, version: Version, getter: HolderAddress) {
        self.catalog().transfer_ended(&key, version, &getter);
    }

    /// A getter found `holder` gone: forget it. Returns how many holders are left.
    pub async fn lost(&self, key: String, version: Version, holder: HolderAddress) -> usize {
        self.catalog().lost(&key, version, &holder)
    }

    /// The holder process whose node is at `node` is gone: forget everything it held.
    pub async fn holder_gone(&self, node: String) {
        self.catalog().holder_gone(&node);
    }

    /// Removes versions of `key`; returns those removed once every holder of them has
    /// dropped its copy (or could not be reached).
    pub async fn remove(&self, key: String, which: Versions) -> Result<Vec<Version>, Error> {
        let (removed, let_go) = self.catalog().remove(&key, &which)?;
        let_go::tell_holders(let_go).await;
        Ok(removed)
    }

    /// Every key starting with `prefix`, with its kept versions.
    pub async fn list(&self, prefix: String) -> Vec<KeyListing> {
        self.catalog().list(&prefix)
    }
}

impl StoreDirectory {
    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
