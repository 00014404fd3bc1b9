//! Large replies from a method (`kt::Blob`), each beside its floor measured in the same
//! run, interleaved round by round ([`floors`]):
//!
//! - **one host**: a worker returns a 100 MB blob it holds. Written in shared memory
//!   (`Blob::in_shared_memory`), the reply hands over its memfd: no copy on either side.
//!   Made from plain bytes, it is copied once into a memfd first. Floor: a raw sealed
//!   memfd handed over an abstract Unix socket by a far-end process and mapped. Then the
//!   same 100 MB as a `Vec<u8>` and a `Vec<f32>` (raw bytes, by the macro), and one round
//!   as MessagePack integers (a `Vec<u8>` inside a struct of its own).
//! - **across hosts**: the same reply over QUIC (`KT_SAME_HOST=off` in the caller, so
//!   it takes the path a caller on another host takes). Floor: a raw quinn stream
//!   (mutual TLS) carrying the same bytes from a far-end process into a buffer.
//!
//! Figures are medians over the rounds, in `figure:` lines. Run with
//! `cargo bench --bench bulk_replies`; `-- one_host` or `-- across_hosts` runs one part.

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[allow(dead_code, reason = "the bulk floors only")]
mod floors;
mod support;

use floors::{MemfdFloor, QuinnBulkFloor};
use kt::Blob;
use kt::prelude::*;
use support::{median, ms, read_every_byte, run_as_task, runtime};

const LEN: usize = 100_000_000;
const ROUNDS: usize = 10;

/// A `Vec<u8>` the macro does not see as one (in a struct of its own): MessagePack
/// integers, as every `Vec<u8>` was before vectors of numbers went raw.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Integers(Vec<u8>);

/// Holds one blob and returns it.
#[kt::actor]
pub struct Holder {
    blob: Mutex<Blob>,
}

#[kt::actor]
impl Holder {
    pub fn new() -> Self {
        Holder {
            blob: Mutex::new(Blob::new()),
        }
    }

    /// Makes the blob it returns: `len` bytes, in shared memory or plain.
    pub fn make(&self, len: usize, shared: bool) -> Result<(), Error> {
        let blob = match shared {
            true => Blob::in_shared_memory(len, |buf| buf.fill(1))?,
            false => Blob::from(vec![1u8; len]),
        };
        *self.blob.lock().map_err(|_| Error::NoRuntime)? = blob;
        Ok(())
    }

    /// The blob (a clone: the same bytes).
    pub fn take(&self) -> Result<Blob, Error> {
        Ok(self.blob.lock().map_err(|_| Error::NoRuntime)?.clone())
    }

    /// The blob's bytes as a plain vector (it travels raw: `#[kt::actor]` encodes
    /// vectors of numbers as their bytes).
    pub fn take_vec(&self) -> Result<Vec<u8>, Error> {
        Ok(self.blob.lock().map_err(|_| Error::NoRuntime)?.to_vec())
    }

    /// As many floats as the blob has bytes / 4 (raw, like `take_vec`).
    pub fn take_floats(&self) -> Result<Vec<f32>, Error> {
        let len = self.blob.lock().map_err(|_| Error::NoRuntime)?.len();
        Ok(vec![0.5f32; len / 4])
    }

    /// The same bytes in MessagePack's own form of a `Vec<u8>`: one integer per byte.
    pub fn take_integers(&self) -> Result<Integers, Error> {
        Ok(Integers(
            self.blob.lock().map_err(|_| Error::NoRuntime)?.to_vec(),
        ))
    }
}

fn one_host(rt: &tokio::runtime::Runtime) {
    run_as_task(rt, async move {
        let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let shared = Holder::spawn().on(local.clone()).await.expect("holder");
        let plain = Holder::spawn().on(local).await.expect("holder");
        shared.make(LEN, true).await.expect("call").expect("make");
        plain.make(LEN, false).await.expect("call").expect("make");
        let mut floor = MemfdFloor::start(LEN).await;
        let (mut zero_copy, mut read, mut copied, mut floor_map) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let blob = shared.take().await.expect("call").expect("take");
            zero_copy.push(started.elapsed());
            std::hint::black_box(read_every_byte(&blob));
            read.push(started.elapsed());
            assert!(blob.is_shared() && blob.len() == LEN);
            drop(blob);
            let started = Instant::now();
            let blob = plain.take().await.expect("call").expect("take");
            copied.push(started.elapsed());
            assert!(blob.is_shared() && blob.len() == LEN);
            drop(blob);
            let started = Instant::now();
            let memory = floor.fetch().await;
            floor_map.push(started.elapsed());
            drop(memory);
        }
        let (mut as_vec, mut as_floats) = (vec![], vec![]);
        for _ in 0..3 {
            let started = Instant::now();
            let vec = shared.take_vec().await.expect("call").expect("take");
            as_vec.push(started.elapsed());
            assert_eq!(vec.len(), LEN);
            drop(vec);
            let started = Instant::now();
            let floats = shared.take_floats().await.expect("call").expect("take");
            as_floats.push(started.elapsed());
            assert_eq!(floats.len(), LEN / 4);
        }
        let started = Instant::now();
        let integers = shared.take_integers().await.expect("call").expect("take");
        let as_integers = started.elapsed();
        assert_eq!(integers.0.len(), LEN);
        println!(
            "figure: 100 MB Blob reply, one host, written in shared memory: {} (floor fd pass + map: {})",
            ms(median(&mut zero_copy)),
            ms(median(&mut floor_map))
        );
        println!(
            "figure: 100 MB Blob reply, one host, + read every byte: {}",
            ms(median(&mut read))
        );
        println!(
            "figure: 100 MB Blob reply, one host, from plain bytes (copied once into a memfd): {}",
            ms(median(&mut copied))
        );
        println!(
            "figure: 100 MB Vec<u8> reply, one host (raw bytes, 3 rounds): {}",
            ms(median(&mut as_vec))
        );
        println!(
            "figure: 100 MB Vec<f32> reply, one host (raw bytes, 3 rounds): {}",
            ms(median(&mut as_floats))
        );
        println!(
            "figure: 100 MB of MessagePack integers (a Vec<u8> in a struct), one host, one round: {}",
            ms(as_integers)
        );
    });
}

fn across_hosts(rt: &tokio::runtime::Runtime) {
    run_as_task(rt, async move {
        let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let holder = Holder::spawn().on(local).await.expect("holder");
        holder.make(LEN, true).await.expect("call").expect("make");
        let mut floor = QuinnBulkFloor::start(LEN).await;
        let mut buffer = vec![0u8; LEN];
        let (mut reply, mut raw) = (vec![], vec![]);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let blob = holder.take().await.expect("call").expect("take");
            reply.push(started.elapsed());
            assert!(!blob.is_shared() && blob.len() == LEN);
            drop(blob);
            let started = Instant::now();
            floor.fetch(&mut buffer).await;
            raw.push(started.elapsed());
        }
        let (reply, raw) = (median(&mut reply), median(&mut raw));
        println!(
            "figure: 100 MB Blob reply over QUIC: {} ({:.2} x the floor's speed)",
            ms(reply),
            raw.as_secs_f64() / reply.as_secs_f64()
        );
        println!("figure: raw quinn stream 100 MB (floor): {}", ms(raw));
    });
}

fn main() {
    kt::serve_if_worker();
    floors::serve_if_floor();
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    if parts == ["across_hosts"] {
        // The caller (this process) takes the path of a caller on another host. Set
        // before anything else runs.
        // SAFETY: single-threaded here (no runtime, no worker started).
        unsafe { std::env::set_var("KT_SAME_HOST", "off") };
        return across_hosts(&runtime());
    }
    if wants("one_host") {
        one_host(&runtime());
    }
    if wants("across_hosts") {
        // In a process of its own, whose calls never take the same-host path.
        let status = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .arg("across_hosts")
            .status()
            .expect("the across-hosts run");
        assert!(status.success(), "the across-hosts run failed: {status}");
    }
}
