//! Remote-call benchmarks on the local-process backend, each beside the floors measured
//! in the same run ([`floors`]): a raw quinn stream ping-pong (16-byte messages, mutual
//! TLS) and a Unix-socket ping-pong, both with each end in a tokio task of its own
//! process, as a user's fastest hand-written code would be.
//!
//! Round trips and pipelined throughput are measured in interleaved rounds — kt, then
//! each floor, in an order that rotates every round — so that all see the same machine,
//! and reported as medians and p99 of every call (round trips here have two modes, which
//! a mean hides) in `figure:` lines. Lifecycle figures use criterion.
//!
//! Run with `cargo bench --bench remote`; `-- round_trips`, `-- pipelined` or
//! `-- head_of_line` run one part. `-- callgrind N` makes N round trips and nothing
//! else, for `valgrind --tool=callgrind` (instructions per round trip: run it with two
//! values of N and divide the difference); `-- callgrind_pipelined N` makes N calls kept
//! 10,000 in flight, the same way per pipelined call. The workers are this bench binary itself
//! (`kt::serve_if_worker()` first thing in `main`).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code, reason = "remote calls use the ping-pong floors only")]
mod floors;
mod support;

use criterion::Criterion;
use floors::{QuinnFloor, UnixFloor};
use kt::prelude::*;
use support::{run_as_task, runtime};

#[kt::actor]
pub struct Echo {
    total: u64,
}

#[kt::actor]
impl Echo {
    pub fn new() -> Self {
        Echo { total: 0 }
    }

    pub fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }

    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// A method's own error, for the error round trip.
    pub fn refuse(&self) -> Result<u64, String> {
        Err("no".to_string())
    }

    /// A large reply of `len` bytes, built once per process: the figure is the
    /// transport's, not the cost of producing the bytes.
    pub fn blob(&self, len: usize) -> bytes::Bytes {
        static BLOB: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
        let blob = BLOB.get_or_init(|| bytes::Bytes::from(vec![7u8; len]));
        blob.slice(..len.min(blob.len()))
    }

    /// A small `&self` call, answered while others run.
    pub fn ping(&self) -> u32 {
        1
    }

    /// Never answers (until the process dies).
    pub async fn hang(&self) {
        std::future::pending::<()>().await
    }

    /// Calls `target` once, for actor-to-actor round trips.
    pub async fn call(&self, target: ActorRef<Echo>, times: u64) -> u64 {
        let mut last = 0;
        for _ in 0..times {
            last = target.add(1).await.expect("target answers");
        }
        last
    }
}

fn spawn_echo(rt: &tokio::runtime::Runtime) -> ActorRef<Echo> {
    rt.block_on(
        Echo::spawn()
            .on(Arc::new(kt::LocalProcess::new()))
            .into_future(),
    )
    .expect("spawn")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// Median and p99 of `samples` (sorted in place).
fn p50_p99(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    (percentile(samples, 0.50), percentile(samples, 0.99))
}

/// Times each of `n` evaluations of the async expression `one`, appending to `out`.
macro_rules! timed {
    ($n:expr, $out:expr, $one:expr) => {
        for _ in 0..$n {
            let start = Instant::now();
            $one;
            $out.push(start.elapsed());
        }
    };
}

const ROUNDS: usize = 20;
const CALLS_PER_ROUND: usize = 1_000;

/// Round trips: kt (a call, a method's error, actor to actor) and both floors,
/// interleaved round by round.
fn round_trips(rt: &tokio::runtime::Runtime) {
    let echo = spawn_echo(rt);
    let caller = spawn_echo(rt);
    run_as_task(rt, async move {
        let mut quinn = QuinnFloor::start().await;
        let mut unix = UnixFloor::start().await;
        // Warm up every path once.
        for _ in 0..200 {
            echo.add(1).await.expect("call");
            quinn.round_trip().await;
            unix.round_trip().await;
        }
        let (mut kt, mut errors, mut q, mut u) = (vec![], vec![], vec![], vec![]);
        let (mut a2a, mut ratios) = (vec![], vec![]);
        for round in 0..ROUNDS {
            let (mut kt_round, mut q_round) = (vec![], vec![]);
            for part in 0..4 {
                match (part + round) % 4 {
                    0 => {
                        timed!(CALLS_PER_ROUND, kt_round, echo.add(1).await.expect("call"))
                    }
                    1 => timed!(CALLS_PER_ROUND, q_round, quinn.round_trip().await),
                    2 => timed!(CALLS_PER_ROUND, u, unix.round_trip().await),
                    _ => {
                        timed!(
                            CALLS_PER_ROUND / 4,
                            errors,
                            echo.refuse()
                                .await
                                .expect("call")
                                .expect_err("the method's own error")
                        );
                        let start = Instant::now();
                        let n = CALLS_PER_ROUND as u64 / 4;
                        caller.call(echo.clone(), n).await.expect("call");
                        a2a.push(start.elapsed() / n as u32);
                    }
                }
            }
            let kt_median = p50_p99(&mut kt_round).0;
            let q_median = p50_p99(&mut q_round).0;
            ratios.push(kt_median.as_secs_f64() / q_median.as_secs_f64());
            kt.extend(kt_round);
            q.extend(q_round);
        }
        let (kt50, kt99) = p50_p99(&mut kt);
        let (q50, q99) = p50_p99(&mut q);
        let (u50, u99) = p50_p99(&mut u);
        let (e50, e99) = p50_p99(&mut errors);
        let (a50, _) = p50_p99(&mut a2a);
        ratios.sort_by(f64::total_cmp);
        println!(
            "figure: round trip, {} calls in {ROUNDS} interleaved rounds: kt p50 {kt50:?} p99 {kt99:?} | floor quinn p50 {q50:?} p99 {q99:?} | floor unix p50 {u50:?} p99 {u99:?}",
            kt.len()
        );
        println!(
            "figure: round trip kt / quinn (p50): {:.2} over the whole run; per round median {:.2}, range {:.2}-{:.2}",
            kt50.as_secs_f64() / q50.as_secs_f64(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
        println!(
            "figure: a method's error round trip p50 {e50:?} p99 {e99:?}; actor to actor round trip (median of per-round means) {a50:?}"
        );
    });
}

const IN_FLIGHT: usize = 10_000;

/// Pipelined calls: one caller with 10,000 in flight, two callers to two actors, and
/// the quinn floor writing 10,000 messages back to back, interleaved round by round.
fn pipelined(rt: &tokio::runtime::Runtime) {
    let echo = spawn_echo(rt);
    let second = spawn_echo(rt);
    run_as_task(rt, async move {
        let mut quinn = QuinnFloor::start().await;
        let one_caller = |echo: ActorRef<Echo>| async move {
            let calls: Vec<_> = (0..IN_FLIGHT).map(|_| echo.add(1)).collect();
            for call in calls {
                call.await.expect("call");
            }
        };
        let two_by_two = |actors: [ActorRef<Echo>; 2]| async move {
            let callers: Vec<_> = actors
                .into_iter()
                .map(|actor| {
                    tokio::spawn(async move {
                        let calls: Vec<_> = (0..IN_FLIGHT / 2).map(|_| actor.add(1)).collect();
                        for call in calls {
                            call.await.expect("call");
                        }
                    })
                })
                .collect();
            for caller in callers {
                caller.await.expect("caller");
            }
        };
        one_caller(echo.clone()).await;
        let (mut one, mut two, mut floor) = (vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            for part in 0..3 {
                let start = Instant::now();
                let out = match (part + round) % 3 {
                    0 => {
                        one_caller(echo.clone()).await;
                        &mut one
                    }
                    1 => {
                        two_by_two([echo.clone(), second.clone()]).await;
                        &mut two
                    }
                    _ => {
                        quinn.pipelined(IN_FLIGHT).await;
                        &mut floor
                    }
                };
                out.push(IN_FLIGHT as f64 / start.elapsed().as_secs_f64());
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let ((o, o_lo, o_hi), (t, t_lo, t_hi)) = (median(&mut one), median(&mut two));
        let (f, f_lo, f_hi) = median(&mut floor);
        println!(
            "figure: pipelined, {IN_FLIGHT} in flight, median of {ROUNDS} interleaved rounds (range): one caller {:.0} K calls/s ({:.0}-{:.0}) | 2 callers x 2 actors {:.0} K/s ({:.0}-{:.0}) | floor quinn batched 16-byte messages {:.0} K/s ({:.0}-{:.0})",
            o / 1e3,
            o_lo / 1e3,
            o_hi / 1e3,
            t / 1e3,
            t_lo / 1e3,
            t_hi / 1e3,
            f / 1e3,
            f_lo / 1e3,
            f_hi / 1e3
        );
    });
}

/// Only `n` round trips after a warm-up: the body of the callgrind measurement.
fn callgrind(rt: &tokio::runtime::Runtime, n: u64) {
    let echo = spawn_echo(rt);
    run_as_task(rt, async move {
        for _ in 0..n {
            echo.add(1).await.expect("call");
        }
    });
}

/// Only `n` raw quinn ping-pongs: the floor's side of the callgrind measurement (and a
/// run to trace beside `callgrind`'s).
fn callgrind_floor(rt: &tokio::runtime::Runtime, n: u64) {
    run_as_task(rt, async move {
        let mut floor = QuinnFloor::start().await;
        for _ in 0..n {
            floor.round_trip().await;
        }
    });
}

/// `n` calls kept `IN_FLIGHT` at a time, for counting instructions per pipelined call.
fn callgrind_pipelined(rt: &tokio::runtime::Runtime, n: usize) {
    let echo = spawn_echo(rt);
    run_as_task(rt, async move {
        let mut left = n;
        while left > 0 {
            let batch = left.min(IN_FLIGHT);
            let calls: Vec<_> = (0..batch).map(|_| echo.add(1)).collect();
            for call in calls {
                call.await.expect("call");
            }
            left -= batch;
        }
    });
}

/// Head-of-line: how long small calls take while a 100 MB reply is on its way to the
/// driver — to another actor (another handle: the transport's share) and to the same actor
/// (which also spends its own time encoding the reply). The large reply travels on a
/// stream of its own.
fn head_of_line(rt: &tokio::runtime::Runtime) {
    const BIG: usize = 100 * 1024 * 1024;
    let spawn = || {
        rt.block_on(
            Echo::spawn()
                .max_concurrency(2)
                .on(Arc::new(kt::LocalProcess::new()))
                .into_future(),
        )
        .expect("spawn")
    };
    let (echo, other) = (spawn(), spawn());
    for (what, small) in [
        ("another actor", other.clone()),
        ("the same actor", echo.clone()),
    ] {
        let echo = echo.clone();
        let (alone, during, big_took) = run_as_task(rt, async move {
            // Warm up: the blob is built, and the driver has seen one of this size.
            let _ = echo.blob(BIG).await.expect("blob");
            let mut alone = Vec::new();
            for _ in 0..200 {
                let start = Instant::now();
                small.ping().await.expect("ping");
                alone.push(start.elapsed());
            }
            let big = echo.blob(BIG);
            let big_started = Instant::now();
            let mut during = Vec::new();
            let big = tokio::spawn(async move { big.await.map(|b| b.len()) });
            while !big.is_finished() {
                let start = Instant::now();
                small.ping().await.expect("ping");
                during.push(start.elapsed());
            }
            let len = big.await.expect("task").expect("blob");
            assert_eq!(len, BIG);
            (alone, during, big_started.elapsed())
        });
        let median = |mut v: Vec<Duration>| {
            v.sort_unstable();
            (v[v.len() / 2], v[v.len() * 99 / 100], v[v.len() - 1])
        };
        let (alone_p50, _, _) = median(alone);
        let (during_p50, during_p99, during_max) = median(during.clone());
        println!(
            "figure: small calls to {what}: alone p50 {alone_p50:?}; while a 100 MB reply is in flight ({big_took:?}): p50 {during_p50:?}, p99 {during_p99:?}, max {during_max:?} over {} calls",
            during.len()
        );
    }
}

fn lifecycle(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("remote/lifecycle");
    group.sample_size(10);
    group.bench_function("spawn_to_first_reply", |b| {
        b.iter_custom(|iters| {
            run_as_task(rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let echo = Echo::spawn()
                        .on(Arc::new(kt::LocalProcess::new()))
                        .await
                        .expect("spawn");
                    echo.add(1).await.expect("first reply");
                    total += start.elapsed();
                    echo.kill();
                }
                total
            })
        })
    });
    group.bench_function("kill_9_to_actor_died", |b| {
        b.iter_custom(|iters| {
            run_as_task(rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let echo = Echo::spawn()
                        .max_concurrency(2)
                        .on(Arc::new(kt::LocalProcess::new()))
                        .await
                        .expect("spawn");
                    let waiting = echo.hang();
                    // Answered after `hang` started (calls start in order): the call waits.
                    let pid = echo.pid().await.expect("pid") as i32;
                    let start = Instant::now();
                    // SAFETY: sends SIGKILL to a worker process this bench spawned.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let died = waiting.await;
                    total += start.elapsed();
                    assert!(matches!(died, Err(Error::ActorDied { .. })), "{died:?}");
                }
                total
            })
        })
    });
    group.bench_function("next_call_to_a_dead_actor", |b| {
        let echo = spawn_echo(rt);
        echo.kill();
        b.iter(|| {
            futures_util::FutureExt::now_or_never(echo.add(1))
                .expect("fails at once")
                .expect_err("dead")
        })
    });
    group.finish();

    let echo = spawn_echo(rt);
    let pid = run_as_task(rt, async move { echo.pid().await.expect("pid") });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: unknown");
    println!("figure: idle worker process memory: {rss}");
}

fn main() {
    kt::serve_if_worker();
    floors::serve_if_floor();
    let rt = runtime();
    let args: Vec<String> = std::env::args().collect();
    let asked = |part: &str| args.iter().any(|arg| arg == part);
    // `MODE N`: the count after a mode's name, or its default.
    let count_after = |mode: &str, default: u64| {
        let at = args.iter().position(|arg| arg == mode)?;
        Some(
            args.get(at + 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(default),
        )
    };
    if let Some(n) = count_after("callgrind_pipelined", IN_FLIGHT as u64) {
        return callgrind_pipelined(&rt, n as usize);
    }
    if let Some(n) = count_after("callgrind_floor", 1000) {
        return callgrind_floor(&rt, n);
    }
    if let Some(n) = count_after("callgrind", 1000) {
        return callgrind(&rt, n);
    }
    let only = ["round_trips", "pipelined", "head_of_line"];
    if only.iter().any(|part| asked(part)) {
        if asked("round_trips") {
            round_trips(&rt);
        }
        if asked("pipelined") {
            pipelined(&rt);
        }
        if asked("head_of_line") {
            head_of_line(&rt);
        }
        return;
    }
    round_trips(&rt);
    pipelined(&rt);
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    lifecycle(&mut c, &rt);
    head_of_line(&rt);
    c.final_summary();
}
