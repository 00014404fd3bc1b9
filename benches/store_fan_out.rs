//! Fan-out of the data store on the local-process backend: one worker puts a version that
//! eight other workers wait for (`wait_newer`, answered at once when it is published); the
//! directory places them in a pipelined tree of relays. Every getter takes the path of a
//! getter on another host (`KT_STORE_SAME_HOST=off` in the workers: QUIC bulk streams),
//! so the bytes really move eight times; on one machine they share its cores, where on a
//! cluster each getter has its own.
//!
//! Reported per size, in the same run: the time until all eight hold the version and how
//! many copies the putter sent, with the tree and (in a second process with
//! `KT_STORE_FANOUT=off`, whose directory places nobody under a relay) without it; the
//! floor is one getter alone copying the same version (the put included, as in the
//! others), the time a tree on separate hosts approaches. Figures are medians over the rounds, in `figure:` lines. Run with
//! `cargo bench --bench store_fan_out`; `-- 1gib` adds 1 GiB to the default 100 MB.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use kt::prelude::*;
use kt::store::Version;
use support::{median, ms, run_as_task, runtime};

const MB: usize = 1_000_000;
const GETTERS: usize = 8;

#[kt::actor]
pub struct Member;

#[kt::actor]
impl Member {
    pub fn new() -> Self {
        Member
    }

    /// Puts `len` bytes of `seed` as the next version of `key`, keeping only it.
    pub async fn put(&self, key: String, len: usize, seed: u8) -> Result<Version, Error> {
        kt::store::put(key, vec![seed; len]).keep_last(1).await
    }

    /// Waits for a version of `key` newer than `after`; its size.
    pub async fn wait_newer(&self, key: String, after: Version) -> Result<usize, Error> {
        Ok(kt::store::wait_newer(key, after).await?.bytes().len())
    }

    /// Bytes of `key` this process sent over QUIC bulk streams so far.
    pub fn sent(&self, key: String) -> u64 {
        kt::store::traffic_of(&key).sent_over_quic
    }
}

/// Times `rounds` publications of `len` bytes to `getters` waiting workers: how long until
/// the last has it, and how many copies the putter sent (medians).
fn publish_to(rt: &tokio::runtime::Runtime, getters: usize, len: usize, rounds: usize) -> Figure {
    run_as_task(rt, async move {
        let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let quic_only = || kt::Compute::new().env(kt::store::SAME_HOST_ENV, "off");
        let putter = Member::spawn().on(local.clone()).await.expect("putter");
        let mut members = Vec::new();
        for _ in 0..getters {
            let member = Member::spawn().compute(quic_only()).on(local.clone()).await;
            members.push(member.expect("getter"));
        }
        let key = format!("bench/fan-out/{getters}/{len}");
        let (mut times, mut copies) = (vec![], vec![]);
        let mut last = putter
            .put(key.clone(), 1, 0)
            .await
            .expect("call")
            .expect("put");
        for round in 0..rounds {
            let waiting: Vec<_> = members
                .iter()
                .map(|m| tokio::spawn(m.wait_newer(key.clone(), last).into_future()))
                .collect();
            while kt::store::ls(&key).await.expect("ls")[0].waiting < getters {
                tokio::task::yield_now().await;
            }
            let sent = putter.sent(key.clone()).await.expect("call");
            let started = Instant::now();
            last = putter
                .put(key.clone(), len, round as u8 + 1)
                .await
                .expect("call")
                .expect("put");
            for waited in waiting {
                let got = waited.await.expect("task").expect("call").expect("get");
                assert_eq!(got, len);
            }
            times.push(started.elapsed());
            let sent = putter.sent(key.clone()).await.expect("call") - sent;
            copies.push(sent as f64 / len as f64);
        }
        copies.sort_by(f64::total_cmp);
        Figure {
            time: median(&mut times),
            copies: copies[copies.len() / 2],
        }
    })
}

struct Figure {
    time: Duration,
    copies: f64,
}

fn size_name(len: usize) -> String {
    if len >= 1 << 30 {
        "1 GiB".to_string()
    } else {
        format!("{} MB", len / MB)
    }
}

fn main() {
    kt::serve_if_worker();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mut sizes = vec![(100 * MB, 5)];
    if args.iter().any(|a| a == "1gib") {
        sizes.push((1 << 30, 2));
    }
    let untreed = args.iter().any(|a| a == "without_tree");
    if untreed {
        // Read by this process's directory, before any of it runs.
        // SAFETY: single-threaded here (no runtime, no worker started).
        unsafe { std::env::set_var(kt::store::FANOUT_ENV, "off") };
    }
    let rt = runtime();
    for &(len, rounds) in &sizes {
        let size = size_name(len);
        let fig = publish_to(&rt, GETTERS, len, rounds);
        let how = if untreed { "without the tree" } else { "tree" };
        println!(
            "figure: fan-out {size} to {GETTERS} getters, {how}: {} (the putter sent {:.2} copies)",
            ms(fig.time),
            fig.copies
        );
        if !untreed {
            let floor = publish_to(&rt, 1, len, rounds);
            println!(
                "figure: fan-out {size} to 1 getter (floor): {}",
                ms(floor.time)
            );
        }
    }
    if !untreed {
        // The directory reads its setting once: a process of its own.
        let mut command = std::process::Command::new(std::env::current_exe().expect("this binary"));
        command.arg("without_tree").args(&args);
        let status = command.status().expect("the run without the tree");
        assert!(
            status.success(),
            "the run without the tree failed: {status}"
        );
    }
}
