//! How many bytes this process moved, by path, in all and per key: what `kt store ls`
//! and the tests read to see which path a value took.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Bytes this process moved through the store since it started, by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Bytes of values this process mapped from a holder on its host (memfds received).
    pub mapped_from_this_host: u64,
    /// Bytes of values this process passed to getters on its host (memfds sent).
    pub passed_on_this_host: u64,
    /// Bytes of values this process received over QUIC bulk streams (verified).
    pub received_over_quic: u64,
    /// Bytes of values this process sent over QUIC bulk streams.
    pub sent_over_quic: u64,
    /// Ranges that broke off because their source (a holder, a relay) failed while this
    /// process copied them; what they had verified was kept, the rest came from others.
    pub sources_lost_mid_copy: u64,
}

#[derive(Default)]
struct Counts {
    all: Traffic,
    by_key: HashMap<String, Traffic>,
}

static COUNTS: LazyLock<Mutex<Counts>> = LazyLock::new(Mutex::default);

/// Adds to the counts of `key` and of the process.
pub(crate) fn count(key: &str, add: impl Fn(&mut Traffic)) {
    let mut counts = COUNTS.lock().unwrap_or_else(|poison| poison.into_inner());
    add(&mut counts.all);
    match counts.by_key.get_mut(key) {
        Some(traffic) => add(traffic),
        None => {
            let mut traffic = Traffic::default();
            add(&mut traffic);
            counts.by_key.insert(key.to_string(), traffic);
        }
    }
}

fn counts() -> std::sync::MutexGuard<'static, Counts> {
    COUNTS.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What this process moved so far, all keys together.
pub fn traffic() -> Traffic {
    counts().all
}

/// What this process moved so far for `key`.
pub fn traffic_of(key: &str) -> Traffic {
    counts().by_key.get(key).copied().unwrap_or_default()
}
