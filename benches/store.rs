//! Data-store benchmarks on the local-process backend, each beside its floor measured in
//! the same run, interleaved round by round ([`floors`]):
//!
//! - **one host**: a worker puts a value (a fresh version each round); the driver's `get`
//!   returns it mapped (the holder's memfd over a Unix socket, not read), then reads every
//!   byte; and the same from another worker (actor to actor). Floor: a raw sealed memfd
//!   handed over an abstract Unix socket by a far-end process and mapped, then read.
//! - **across hosts**: the same get over the QUIC bulk path (`KT_STORE_SAME_HOST=off` in
//!   the getter, so it takes the path a getter on another host takes; kt's own tests
//!   check that path between network namespaces). Floor: a raw quinn stream (mutual TLS)
//!   carrying the same bytes from a far-end process into a buffer.
//!
//! Figures are medians over the rounds, in `figure:` lines. Run with
//! `cargo bench --bench store`; `-- one_host`, `-- across_hosts` run one part, and
//! `-- 1gib` adds the 1 GiB size to the default 100 MB.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code, reason = "the store uses the bulk floors only")]
mod floors;
mod support;

use floors::{MemfdFloor, QuinnBulkFloor};
use kt::prelude::*;
use kt::store::Version;
use support::{median, ms, read_every_byte, run_as_task, runtime};

const MB: usize = 1_000_000;

#[kt::actor]
pub struct Producer;

#[kt::actor]
impl Producer {
    pub fn new() -> Self {
        Producer
    }

    /// Puts `len` bytes of `seed` as the next version of `key`, with `keep_last`.
    pub async fn put(
        &self,
        key: String,
        len: usize,
        seed: u8,
        keep_last: Option<usize>,
    ) -> Result<Version, Error> {
        let put = kt::store::put(key, vec![seed; len]);
        match keep_last {
            Some(n) => put.keep_last(n).await,
            None => put.await,
        }
    }

    /// Gets the newest version of `key`, then reads every byte: how long each took.
    pub async fn get_and_read(&self, key: String) -> Result<(Duration, Duration), Error> {
        let started = Instant::now();
        let entry = kt::store::get(&key).await?;
        let got = started.elapsed();
        let sum = read_every_byte(entry.bytes());
        std::hint::black_box(sum);
        Ok((got, started.elapsed() - got))
    }
}

fn one_host(rt: &tokio::runtime::Runtime, len: usize, rounds: usize, keep_last: Option<usize>) {
    run_as_task(rt, async move {
        let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let producer = Producer::spawn().on(local.clone()).await.expect("producer");
        let consumer = Producer::spawn().on(local).await.expect("consumer");
        let mut floor = MemfdFloor::start(len).await;
        let key = format!("bench/one-host/{len}/{keep_last:?}");
        let (mut get, mut get_read, mut a2a, mut a2a_read) = (vec![], vec![], vec![], vec![]);
        let (mut floor_map, mut floor_read) = (vec![], vec![]);
        for round in 0..rounds {
            producer
                .put(key.clone(), len, round as u8, keep_last)
                .await
                .expect("call")
                .expect("put");
            let started = Instant::now();
            let entry = kt::store::get(&key).await.expect("get");
            get.push(started.elapsed());
            std::hint::black_box(read_every_byte(entry.bytes()));
            get_read.push(started.elapsed());
            drop(entry);
            let (got, read) = consumer
                .get_and_read(key.clone())
                .await
                .expect("call")
                .expect("get");
            a2a.push(got);
            a2a_read.push(got + read);
            let started = Instant::now();
            let memory = floor.fetch().await;
            floor_map.push(started.elapsed());
            std::hint::black_box(read_every_byte(memory.as_slice()));
            floor_read.push(started.elapsed());
        }
        let size = if len >= 1 << 30 {
            "1 GiB".to_string()
        } else {
            format!("{} MB", len / MB)
        };
        let size = match keep_last {
            Some(n) => format!("{size} (keep_last({n}): the holder frees old versions meanwhile)"),
            None => size,
        };
        println!(
            "figure: store get {size}, worker to driver, mapped: {} (floor fd pass + map: {})",
            ms(median(&mut get)),
            ms(median(&mut floor_map))
        );
        println!(
            "figure: store get {size}, worker to driver, + read every byte: {} (floor: {})",
            ms(median(&mut get_read)),
            ms(median(&mut floor_read))
        );
        println!(
            "figure: store get {size}, actor to actor, mapped: {}",
            ms(median(&mut a2a))
        );
        println!(
            "figure: store get {size}, actor to actor, + read every byte: {}",
            ms(median(&mut a2a_read))
        );
    });
}

fn across_hosts(rt: &tokio::runtime::Runtime, len: usize, rounds: usize) {
    run_as_task(rt, async move {
        let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let producer = Producer::spawn().on(local).await.expect("producer");
        let mut floor = QuinnBulkFloor::start(len).await;
        let key = format!("bench/across-hosts/{len}");
        let mut buffer = vec![0u8; len];
        let (mut get, mut get_into, mut raw) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            producer
                .put(key.clone(), len, round as u8, None)
                .await
                .expect("call")
                .expect("put");
            let started = Instant::now();
            let info = kt::store::get_into(&key, &mut buffer)
                .await
                .expect("get_into");
            get_into.push(started.elapsed());
            assert_eq!(info.size as usize, len);
            // A second version, fetched into a memfd of the driver's own (kept, served).
            producer
                .put(key.clone(), len, round as u8 + 1, None)
                .await
                .expect("call")
                .expect("put");
            let started = Instant::now();
            drop(kt::store::get(&key).await.expect("get"));
            get.push(started.elapsed());
            let started = Instant::now();
            floor.fetch(&mut buffer).await;
            raw.push(started.elapsed());
        }
        let size = if len >= 1 << 30 {
            "1 GiB".to_string()
        } else {
            format!("{} MB", len / MB)
        };
        let (get, get_into, raw) = (median(&mut get), median(&mut get_into), median(&mut raw));
        let ratio = |d: Duration| raw.as_secs_f64() / d.as_secs_f64();
        println!(
            "figure: store get {size} over QUIC: {} ({:.2} x the floor's speed)",
            ms(get),
            ratio(get)
        );
        println!(
            "figure: store get_into {size} over QUIC: {} ({:.2} x the floor's speed)",
            ms(get_into),
            ratio(get_into)
        );
        println!("figure: raw quinn stream {size} (floor): {}", ms(raw));
    });
}

fn main() {
    kt::serve_if_worker();
    floors::serve_if_floor();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "1gib")
        .collect();
    let big = args.iter().any(|a| a == "1gib");
    let mut sizes = vec![(100 * MB, 10)];
    if big {
        sizes.push((1 << 30, 4));
    }
    let wants = |part: &str| parts.is_empty() || parts.contains(&part);
    if parts == ["across_hosts"] {
        // The getter (this process) takes the path of a getter on another host. Set
        // before anything else runs: no other thread reads the environment yet.
        // SAFETY: single-threaded here (no runtime, no worker started).
        unsafe { std::env::set_var("KT_STORE_SAME_HOST", "off") };
    }
    let rt = runtime();
    if wants("one_host") {
        for &(len, rounds) in &sizes {
            one_host(&rt, len, rounds, None);
        }
        one_host(&rt, 100 * MB, 10, Some(2));
    }
    if parts == ["across_hosts"] {
        for &(len, rounds) in &sizes {
            across_hosts(&rt, len, rounds);
        }
    } else if wants("across_hosts") {
        // In a process of its own, whose getter never takes the same-host path.
        let mut command = std::process::Command::new(std::env::current_exe().expect("this binary"));
        command.arg("across_hosts");
        if big {
            command.arg("1gib");
        }
        let status = command.status().expect("the across-hosts run");
        assert!(status.success(), "the across-hosts run failed: {status}");
    }
}
