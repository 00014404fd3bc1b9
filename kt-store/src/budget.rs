//! How much a process's store may hold: a memory budget for the memfds it made, a disk
//! budget for values spilled to files, and how long a put waits for room.
//!
//! Read once from the environment, so that each worker can get its own
//! (`Compute::env("KT_STORE_MEMORY_BYTES", ...)`).

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// Bytes of memfds this process may hold (values it put and copies it fetched).
/// Default: half of the smaller of the machine's memory and the cgroup's limit.
pub const MEMORY_ENV: &str = "KT_STORE_MEMORY_BYTES";
/// Bytes of spilled values this process may keep on disk. Default: 0 (no spilling).
pub const DISK_ENV: &str = "KT_STORE_DISK_BYTES";
/// Where spilled values go (unlinked files, gone with the process). Default: the
/// system's temporary directory.
pub const SPILL_DIR_ENV: &str = "KT_STORE_SPILL_DIR";
/// How long a put waits for room before failing with `StoreFull`, in milliseconds.
/// Default: 10,000.
pub const FULL_WAIT_ENV: &str = "KT_STORE_FULL_WAIT_MS";

/// The limits of this process's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    pub memory: u64,
    pub disk: u64,
    pub spill_dir: PathBuf,
    pub full_wait: Duration,
}

impl Budget {
    /// The limits `var` names, with the defaults above for those it does not.
    pub fn from(var: impl Fn(&str) -> Option<String>) -> Budget {
        let number = |name: &str| var(name).and_then(|value| value.trim().parse::<u64>().ok());
        Budget {
            memory: number(MEMORY_ENV).unwrap_or_else(default_memory),
            disk: number(DISK_ENV).unwrap_or(0),
            spill_dir: var(SPILL_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            full_wait: Duration::from_millis(number(FULL_WAIT_ENV).unwrap_or(10_000)),
        }
    }
}

/// This process's budget.
pub(crate) fn budget() -> &'static Budget {
    static BUDGET: LazyLock<Budget> =
        LazyLock::new(|| Budget::from(|name| std::env::var(name).ok()));
    &BUDGET
}

/// Half of the smaller of the machine's memory and this cgroup's limit.
fn default_memory() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| mem_total(&info))
        .unwrap_or(8 << 30);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|max| max.trim().parse::<u64>().ok());
    machine.min(cgroup.unwrap_or(u64::MAX)) / 2
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_come_from_the_environment_with_defaults() {
        let vars = [
            (MEMORY_ENV, "3000000"),
            (DISK_ENV, "10"),
            (FULL_WAIT_ENV, "50"),
        ];
        let budget = Budget::from(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!((budget.memory, budget.disk), (3_000_000, 10));
        assert_eq!(budget.full_wait, Duration::from_millis(50));
        let defaults = Budget::from(|_| None);
        assert!(defaults.memory > 0);
        assert_eq!(defaults.disk, 0);
        assert_eq!(
            mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16 << 20)
        );
    }
}
