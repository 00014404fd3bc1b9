//! The fan-out tree: which processes a getter copies a version from. Many getters of one
//! version (every rollout worker waiting for the new weights) would otherwise all copy
//! from its one holder, one full copy each; instead each getter is handed at most
//! [`PARENTS`] sources, each serving at most [`FANOUT`] getters at once, and a getter
//! still copying is a source too — a relay that forwards every chunk as soon as it has
//! verified it. The first holder then sends about `FANOUT` copies however many getters
//! there are, and the copies flow down the tree at once rather than one level after
//! another.
//!
//! Sources are only ever processes that were holders or getters before the one being
//! placed, so the tree has no cycle; a relay that dies fails its children's ranges, which
//! go on from their other sources and then from the holders.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::catalog::Transfer;
use crate::holder::HolderAddress;

/// How many getters one source serves at once (more only when every source is full).
pub const FANOUT: usize = 2;

/// How many sources one getter copies ranges from at once.
pub const PARENTS: usize = 2;

/// `KT_STORE_FANOUT=off` in the driver (where the directory lives) places no getter under
/// a relay: each copies from the holders that finished only, as a `get_into` does.
pub const FANOUT_ENV: &str = "KT_STORE_FANOUT";

fn relays_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(FANOUT_ENV).map_or(true, |v| v != "off"))
}

/// A source the directory chose for a getter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The process to copy from.
    pub holder: HolderAddress,
    /// True for a getter still copying the version itself (it waits for its chunks).
    pub relay: bool,
}

/// The sources for `getter` among the version's `holders` and the getters copying it now
/// (the `to` of `transfers`, in the order they started); none when a holder is on the
/// getter's host and both take the same-host path (it maps that holder's memfd instead).
pub fn choose(
    holders: &[HolderAddress],
    transfers: &[Transfer],
    getter: &HolderAddress,
) -> Vec<Parent> {
    let maps = |holder: &HolderAddress| {
        holder.host == getter.host && holder.socket.is_some() && getter.socket.is_some()
    };
    if holders.iter().any(maps) {
        return Vec::new();
    }
    let load = |source: &HolderAddress| transfers.iter().filter(|t| &t.from == source).count();
    let mut candidates: Vec<(usize, Parent)> = holders
        .iter()
        .filter(|holder| *holder != getter)
        .map(|holder| {
            let parent = Parent {
                holder: holder.clone(),
                relay: false,
            };
            (load(holder), parent)
        })
        .collect();
    let relays = transfers.iter().filter(|t| t.relay && relays_on());
    for transfer in relays {
        let relay = &transfer.to;
        let known = candidates.iter().any(|(_, c)| &c.holder == relay);
        if relay != getter && !known && !holders.contains(relay) {
            let parent = Parent {
                holder: relay.clone(),
                relay: true,
            };
            candidates.push((load(relay), parent));
        }
    }
    // Least loaded first; among equals, holders before relays and earlier before later
    // (the sort is stable).
    candidates.sort_by_key(|(load, _)| *load);
    let free = candidates.iter().filter(|(load, _)| *load < FANOUT).count();
    candidates
        .into_iter()
        .take(free.clamp(1, PARENTS))
        .map(|(_, parent)| parent)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u16) -> HolderAddress {
        // Every test address is on a host of its own.
        let mut holder = HolderAddress::for_tests(n);
        holder.host = format!("host-{n}");
        holder
    }

    /// Places getters 10, 11, ... one after another, as the directory does when it
    /// answers the waiters of a new version; returns each one's sources.
    fn place(getters: u16) -> Vec<Vec<u16>> {
        let holders = [at(1)];
        let mut transfers = Vec::new();
        let mut placed = Vec::new();
        for getter in (0..getters).map(|g| at(10 + g)) {
            let parents = choose(&holders, &transfers, &getter);
            for parent in &parents {
                transfers.push(Transfer {
                    to: getter.clone(),
                    from: parent.holder.clone(),
                    started_ms: 0,
                    relay: true,
                });
            }
            placed.push(parents.iter().map(|p| p.holder.pid as u16).collect());
        }
        placed
    }

    #[test]
    fn eight_getters_form_a_tree_in_which_no_source_serves_more_than_two() {
        let placed = place(8);
        assert_eq!(placed[0], [1], "the first copies from the holder");
        let mut second = placed[1].clone();
        second.sort();
        assert_eq!(
            second,
            [1, 10],
            "the second from the first (a relay) and the holder"
        );
        for (i, parents) in placed.iter().enumerate() {
            assert!(
                !parents.is_empty() && parents.len() <= PARENTS,
                "{i}: {parents:?}"
            );
            // Sources are earlier processes only: no cycle.
            assert!(
                parents.iter().all(|p| *p == 1 || *p < 10 + i as u16),
                "{i}: {parents:?}"
            );
        }
        let mut served = std::collections::HashMap::new();
        for parent in placed.iter().flatten() {
            *served.entry(*parent).or_insert(0) += 1;
        }
        assert!(served.values().all(|n| *n <= FANOUT), "{served:?}");
        assert_eq!(
            served[&1], FANOUT,
            "the holder serves two getters, not eight"
        );
    }

    #[test]
    fn a_getter_on_a_holders_host_maps_it_and_is_nobodys_child() {
        let with_socket = |mut holder: HolderAddress| {
            holder.socket = Some(format!("kt-store-{}", holder.pid));
            holder
        };
        let (holder, mut near) = (with_socket(at(1)), with_socket(at(5)));
        near.host = holder.host.clone();
        assert!(choose(std::slice::from_ref(&holder), &[], &near).is_empty());
        // With the same-host path off in either, it copies like a getter elsewhere.
        near.socket = None;
        assert_eq!(choose(&[holder], &[], &near).len(), 1);
    }

    #[test]
    fn when_every_source_is_full_the_least_loaded_one_serves_anyway() {
        // Two copies into callers' buffers (not relays) load the only holder.
        let transfers: Vec<Transfer> = (0..FANOUT as u16)
            .map(|g| Transfer {
                to: at(20 + g),
                from: at(1),
                started_ms: 0,
                relay: false,
            })
            .collect();
        let parents = choose(&[at(1)], &transfers, &at(99));
        assert_eq!(
            parents,
            [Parent {
                holder: at(1),
                relay: false
            }]
        );
    }
}
