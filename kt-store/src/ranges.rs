//! One value from several sources at once: the bytes still missing are split into
//! chunk-aligned ranges, one per source (a holder on another host, or a relay of the
//! fan-out), fetched concurrently into
//! disjoint parts of one buffer. A holder whose stream breaks keeps what it verified; the
//! rest of its range goes to the holders left in the next round, so a get finishes while
//! any holder lives, and fails with the last one lost otherwise.

use std::net::SocketAddr;
use std::ops::Range;

use kt_transport::Node;
use kt_transport::node::bulk::{CHUNK_BYTES, RangeFetch};

use crate::directory::Parent;
use crate::holder::HolderAddress;
use crate::traffic;
use crate::version::VersionInfo;

/// A range is split off for another holder only when both halves are at least this long:
/// below it, one more stream's round trip costs more than the bandwidth it adds.
pub(crate) const MIN_RANGE_BYTES: u64 = 8 << 20;

/// At most this many holders serve one getter at once.
pub(crate) const MAX_SOURCES: usize = 4;

/// The parts of a value not yet verified: disjoint ranges, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    ranges: Vec<Range<u64>>,
}

impl Missing {
    /// All `size` bytes.
    pub(crate) fn whole(size: u64) -> Missing {
        Missing {
            ranges: match size {
                0 => Vec::new(),
                size => std::iter::once(0..size).collect(),
            },
        }
    }

    /// True once every byte is verified.
    pub(crate) fn is_done(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The missing bytes split into at most `sources` ranges (no more than there are
    /// ranges of [`MIN_RANGE_BYTES`]), their starts on chunk boundaries: the longest range
    /// is halved until there are enough.
    pub(crate) fn plan(&self, sources: usize) -> Vec<Range<u64>> {
        let chunk = u64::from(CHUNK_BYTES);
        let mut plan = self.ranges.clone();
        while plan.len() < sources {
            let Some((longest, range)) = plan
                .iter()
                .enumerate()
                .max_by_key(|(_, r)| r.end - r.start)
                .map(|(i, r)| (i, r.clone()))
            else {
                break;
            };
            let middle = range.start + (range.end - range.start) / 2 / chunk * chunk;
            if middle - range.start < MIN_RANGE_BYTES || range.end - middle < MIN_RANGE_BYTES {
                break;
            }
            plan[longest] = range.start..middle;
            plan.insert(longest + 1, middle..range.end);
        }
        plan
    }

    /// Bytes `range.start..verified_to` of a planned range are verified now.
    pub(crate) fn verified(&mut self, range: &Range<u64>, verified_to: u64) {
        if verified_to <= range.start {
            return;
        }
        let done = range.start..verified_to.min(range.end);
        let mut left = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if r.end <= done.start || r.start >= done.end {
                left.push(r);
                continue;
            }
            if r.start < done.start {
                left.push(r.start..done.start);
            }
            if r.end > done.end {
                left.push(done.end..r.end);
            }
        }
        self.ranges = left;
    }
}

/// Fills the missing parts of `target` (the whole value, `info.size` bytes) from the
/// `sources` (holders on other hosts, relays), several at once; `verified` hears of each
/// chunk as it passes its digest, and `started` of each holder a range is asked of (for
/// the directory's list of transfers). Sources that fail are dropped from the list (and `lost`
/// is told); returns the last of them when none is left and bytes are still missing.
#[allow(
    clippy::too_many_arguments,
    reason = "the three observers (started, lost, verified) are each used by a different caller"
)]
pub(crate) async fn fetch(
    node: &Node,
    info: &VersionInfo,
    sources: &mut Vec<Parent>,
    target: &mut [u8],
    missing: &mut Missing,
    started: impl Fn(&HolderAddress),
    mut lost: impl FnMut(&HolderAddress),
    verified: &(dyn Fn(Range<u64>) + Send + Sync),
) -> Result<(), Option<HolderAddress>> {
    let mut last_lost = None;
    sources.retain(|source| source.holder.node.parse::<SocketAddr>().is_ok());
    while !missing.is_done() {
        if sources.is_empty() {
            return Err(last_lost);
        }
        let plan = missing.plan(sources.len().min(MAX_SOURCES));
        sources
            .iter()
            .take(plan.len())
            .for_each(|source| started(&source.holder));
        let mut parts = Vec::with_capacity(plan.len());
        let mut rest = &mut *target;
        let mut at = 0u64;
        for range in &plan {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((range.start - at) as usize);
            let (part, tail) = tail.split_at_mut((range.end - range.start) as usize);
            parts.push(part);
            rest = tail;
            at = range.end;
        }
        let fetches = plan
            .iter()
            .zip(parts)
            .enumerate()
            .map(|(i, (range, part))| {
                let source = sources[i % sources.len()].clone();
                async move {
                    // Checked above: every source left has a parseable node address.
                    let holder: SocketAddr = source.holder.node.parse().map_err(|_| range.start)?;
                    let request = RangeFetch {
                        holder,
                        key: &info.key,
                        version: info.version.0,
                        size: info.size,
                        offset: range.start,
                        relay: source.relay,
                    };
                    let fetched = node.fetch_range(request, part, verified).await;
                    fetched.map_err(|failure| {
                        tracing::debug!(
                            "fetching bytes {}..{} of '{}' {} from {}: {}",
                            range.start,
                            range.end,
                            info.key,
                            info.version,
                            source.holder,
                            failure.error
                        );
                        failure.verified
                    })
                }
            });
        let results = futures_util::future::join_all(fetches).await;
        let mut failed = Vec::new();
        for (i, (range, result)) in plan.iter().zip(results).enumerate() {
            let (verified_to, broken) = match result {
                Ok(()) => (range.end, false),
                Err(verified_to) => {
                    failed.push(sources[i % sources.len()].holder.clone());
                    (verified_to, true)
                }
            };
            missing.verified(range, verified_to);
            traffic::count(&info.key, |t| {
                t.received_over_quic += verified_to.saturating_sub(range.start);
                t.sources_lost_mid_copy += u64::from(broken);
            });
        }
        for holder in failed {
            if let Some(index) = sources.iter().position(|s| s.holder == holder) {
                lost(&holder);
                sources.remove(index);
                last_lost = Some(holder);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
// Plans are lists of ranges, some of which hold one.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_value_is_split_on_chunk_boundaries_into_ranges_no_shorter_than_the_minimum() {
        let size = 40 * MIB + 123;
        assert_eq!(Missing::whole(size).plan(1), [0..size]);
        assert_eq!(Missing::whole(size).plan(2), [0..20 * MIB, 20 * MIB..size]);
        let four = Missing::whole(size).plan(4);
        assert_eq!(four.len(), 4);
        assert!(
            four.iter()
                .all(|r| r.start % MIB == 0 && r.end - r.start >= MIN_RANGE_BYTES)
        );
        assert_eq!((four[0].start, four[3].end), (0, size));
        assert!(four.windows(2).all(|w| w[0].end == w[1].start));
        // Too small to be worth a second stream.
        assert_eq!(Missing::whole(10 * MIB).plan(4), [0..10 * MIB]);
        assert!(Missing::whole(0).plan(2).is_empty());
    }

    #[test]
    fn what_a_broken_range_verified_is_kept_and_the_rest_planned_again() {
        let size = 32 * MIB;
        let mut missing = Missing::whole(size);
        let plan = missing.plan(2);
        missing.verified(&plan[0], plan[0].end);
        // The second holder broke after 3 chunks.
        missing.verified(&plan[1], plan[1].start + 3 * MIB);
        assert_eq!(missing.plan(1), [19 * MIB..size]);
        assert_eq!(
            missing.plan(2),
            [19 * MIB..size],
            "13 MiB: not worth splitting"
        );
        missing.verified(&(19 * MIB..size), size);
        assert!(missing.is_done());
    }

    #[test]
    fn nothing_verified_changes_nothing() {
        let mut missing = Missing::whole(4 * MIB);
        missing.verified(&(MIB..2 * MIB), MIB);
        assert_eq!(missing, Missing::whole(4 * MIB));
        missing.verified(&(MIB..2 * MIB), 2 * MIB);
        assert_eq!(missing.plan(3), [0..MIB, 2 * MIB..4 * MIB]);
    }
}
