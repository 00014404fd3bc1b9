//! In-process call benchmarks (docs/design.md §4): round trip with one caller, pipelined
//! throughput with 10,000 calls in flight, and 64 callers into one actor.
//!
//! Run with `cargo bench --bench in_process`. Each benchmark times a whole batch with
//! `iter_custom`, so criterion's per-iteration figure is the cost of one call (round
//! trip) or of one batch (throughput, reported as calls per second).

use std::future::IntoFuture;
use std::time::{Duration, Instant};

mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kt::prelude::*;
use support::run_as_task;

#[kt::actor]
pub struct Counter {
    value: u64,
}

#[kt::actor]
impl Counter {
    pub fn new(start: u64) -> Self {
        Counter { value: start }
    }

    pub fn increment(&mut self) -> u64 {
        self.value += 1;
        self.value
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn spawn_counter(rt: &tokio::runtime::Runtime, mailbox: usize) -> ActorRef<Counter> {
    rt.block_on(
        Counter::spawn(0)
            .mailbox_capacity(mailbox)
            .on(std::sync::Arc::new(kt::InProcess))
            .into_future(),
    )
    .expect("spawn")
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_process/round_trip");
    for (flavor, rt) in [
        ("current_thread", current_thread()),
        ("multi_thread", multi_thread()),
    ] {
        let counter = spawn_counter(&rt, kt::DEFAULT_MAILBOX_CAPACITY);
        group.bench_function(flavor, |b| {
            b.iter_custom(|iters| {
                let counter = counter.clone();
                run_as_task(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        counter.increment().await.expect("call");
                    }
                    start.elapsed()
                })
            })
        });
    }
    let rt = multi_thread();
    let counter = spawn_counter(&rt, kt::DEFAULT_MAILBOX_CAPACITY);
    group.bench_function("multi_thread/caller_outside_runtime", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    counter.increment().await.expect("call");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

const IN_FLIGHT: u64 = 10_000;

fn pipelined(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_process/pipelined_10k_in_flight");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    let cases = [
        (
            "current_thread/mailbox_1024",
            current_thread(),
            kt::DEFAULT_MAILBOX_CAPACITY,
        ),
        ("current_thread/mailbox_16384", current_thread(), 16_384),
        ("multi_thread/mailbox_16384", multi_thread(), 16_384),
    ];
    for (name, rt, mailbox) in cases {
        let counter = spawn_counter(&rt, mailbox);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let counter = counter.clone();
                run_as_task(&rt, async move {
                    let mut calls = Vec::with_capacity(IN_FLIGHT as usize);
                    let start = Instant::now();
                    for _ in 0..iters {
                        calls.extend((0..IN_FLIGHT).map(|_| counter.increment()));
                        for call in calls.drain(..) {
                            call.await.expect("call");
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

const CALLERS: u64 = 64;
const CALLS_PER_CALLER: u64 = 100;

fn many_callers(c: &mut Criterion) {
    let mut group = c.benchmark_group("in_process/64_callers_one_actor");
    group.throughput(Throughput::Elements(CALLERS * CALLS_PER_CALLER));
    for (flavor, rt) in [
        ("current_thread", current_thread()),
        ("multi_thread", multi_thread()),
    ] {
        let counter = spawn_counter(&rt, kt::DEFAULT_MAILBOX_CAPACITY);
        group.bench_function(flavor, |b| {
            b.iter_custom(|iters| {
                let counter = counter.clone();
                run_as_task(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let callers: Vec<_> = (0..CALLERS)
                            .map(|_| {
                                let counter = counter.clone();
                                tokio::spawn(async move {
                                    for _ in 0..CALLS_PER_CALLER {
                                        counter.increment().await.expect("call");
                                    }
                                })
                            })
                            .collect();
                        for caller in callers {
                            caller.await.expect("caller task");
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = round_trip, pipelined, many_callers
}
criterion_main!(benches);
