//! Allocations per remote call, counted by a counting global allocator in the driver
//! process, beside the same count for a raw quinn ping-pong (the floor) in the same run.
//!
//! Both paths cross QUIC, whose own allocations (packets, acknowledgements) are counted
//! in both: what kt adds is the difference, which must stay within the budget of the
//! lean call path (the arguments' encoding and the reply slot, nothing per call in the
//! transport). A binary of its own (`harness = false`): the actor's worker and the floor's
//! far end are this binary started again, and nothing else may allocate while it counts.

#[path = "../benches/floors/mod.rs"]
#[allow(dead_code, reason = "this test uses the quinn floor only")]
mod floors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every allocation and reallocation in this process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is an
// atomic that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[kt::actor]
pub struct Adder {
    total: u64,
}

#[kt::actor]
impl Adder {
    pub fn new() -> Self {
        Adder { total: 0 }
    }

    pub fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

/// Calls per measured round.
const CALLS: u64 = 2000;

/// Rounds; the fewest allocations of any round count (a round can catch a timer or an
/// acknowledgement that the others do not).
const ROUNDS: usize = 5;

/// What kt may add per call to the allocations of a raw QUIC round trip: the encoded
/// arguments and the one-shot reply slot.
const BUDGET: f64 = 2.0;

/// Slack for QUIC's own allocations, which vary a little between runs (acknowledgement
/// timing): a stray packet per round is a fraction of an allocation per call.
const SLACK: f64 = 0.5;

async fn per_call<F: AsyncFnMut()>(mut round_trip: F) -> f64 {
    for _ in 0..CALLS {
        round_trip().await;
    }
    let mut fewest = u64::MAX;
    for _ in 0..ROUNDS {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..CALLS {
            round_trip().await;
        }
        fewest = fewest.min(ALLOCATIONS.load(Ordering::Relaxed) - before);
    }
    fewest as f64 / CALLS as f64
}

fn main() {
    kt::serve_if_worker();
    floors::serve_if_floor();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let placement: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
        let adder = Adder::spawn().on(placement).await.expect("spawn a worker");
        let kt = per_call(async || {
            adder.add(1).await.expect("a reply");
        })
        .await;
        let mut floor = floors::QuinnFloor::start().await;
        let quinn = per_call(async || floor.round_trip().await).await;
        let added = kt - quinn;
        println!(
            "figure: allocations per remote call in the driver: kt {kt:.2}, \
             raw quinn ping-pong {quinn:.2}, added by kt {added:.2} (budget {BUDGET})"
        );
        assert!(
            added <= BUDGET + SLACK,
            "kt adds {added:.2} allocations per call to QUIC's own, over the budget of {BUDGET}"
        );
        println!("test allocations_per_call ... ok");
    });
}
