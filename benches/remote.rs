//! Remote-call benchmarks on the local-process backend (DESIGN.md §4), each beside the
//! floors measured in the same run: a raw quinn ping-pong (16-byte messages, mutual TLS)
//! and a raw Unix-socket ping-pong between two threads.
//!
//! Run with `cargo bench --bench remote`. The workers are this bench binary itself
//! (`kt::serve_if_worker()` first thing in `main`). Percentiles and memory, which
//! criterion does not report, are printed as `figure:` lines.

use std::future::IntoFuture;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use criterion::{Criterion, Throughput};
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

fn round_trips(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let echo = spawn_echo(rt);
    let mut group = c.benchmark_group("remote");
    group.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            let echo = echo.clone();
            run_as_task(rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    echo.add(1).await.expect("call");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("error_round_trip", |b| {
        b.iter_custom(|iters| {
            let echo = echo.clone();
            run_as_task(rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    echo.refuse()
                        .await
                        .expect("call")
                        .expect_err("the method's own error");
                }
                start.elapsed()
            })
        })
    });
    let caller = spawn_echo(rt);
    group.bench_function("actor_to_actor_round_trip", |b| {
        b.iter_custom(|iters| {
            let (caller, target) = (caller.clone(), echo.clone());
            run_as_task(rt, async move {
                let start = Instant::now();
                caller.call(target, iters).await.expect("call");
                start.elapsed()
            })
        })
    });
    group.finish();

    let latencies = run_as_task(rt, async move {
        let mut latencies = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let start = Instant::now();
            echo.add(1).await.expect("call");
            latencies.push(start.elapsed());
        }
        latencies.sort_unstable();
        latencies
    });
    println!(
        "figure: remote round trip over 20000 calls: p50 {:?}, p99 {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
}

const IN_FLIGHT: u64 = 10_000;

fn pipelined(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("remote/pipelined");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    let echo = spawn_echo(rt);
    group.bench_function("one_caller_one_actor", |b| {
        b.iter_custom(|iters| {
            let echo = echo.clone();
            run_as_task(rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let calls: Vec<_> = (0..IN_FLIGHT).map(|_| echo.add(1)).collect();
                    for call in calls {
                        call.await.expect("call");
                    }
                }
                start.elapsed()
            })
        })
    });
    let second = spawn_echo(rt);
    group.bench_function("two_callers_two_actors", |b| {
        b.iter_custom(|iters| {
            let actors = [echo.clone(), second.clone()];
            run_as_task(rt, async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let callers: Vec<_> = actors
                        .iter()
                        .cloned()
                        .map(|actor| {
                            tokio::spawn(async move {
                                let calls: Vec<_> =
                                    (0..IN_FLIGHT / 2).map(|_| actor.add(1)).collect();
                                for call in calls {
                                    call.await.expect("call");
                                }
                            })
                        })
                        .collect();
                    for caller in callers {
                        caller.await.expect("caller");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
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

/// The floor of the transport: 16-byte ping-pong on one quinn stream with mutual TLS.
fn quinn_floor(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let ca = kt_transport::wire::tls::ClusterCa::generate().expect("ca");
    let server_id = ca.issue("server").expect("leaf");
    let client_id = ca.issue("client").expect("leaf");
    let (mut send, mut recv) = rt.block_on(async move {
        let server = quinn::Endpoint::server(
            server_id.server_config().expect("server"),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .expect("server");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("handshake");
            let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
            let mut buf = [0u8; 16];
            while recv.read_exact(&mut buf).await.is_ok() {
                if send.write_all(&buf).await.is_err() {
                    break;
                }
            }
            drop(server);
        });
        let mut client =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        client.set_default_client_config(client_id.client_config().expect("client"));
        let conn = client
            .connect(addr, kt_transport::wire::tls::SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        let streams = conn.open_bi().await.expect("stream");
        // Both stay up for the whole run: closing either would close the stream.
        std::mem::forget(client);
        std::mem::forget(conn);
        streams
    });
    c.bench_function("floor/quinn_ping_pong_16_bytes", |b| {
        b.iter(|| {
            rt.block_on(async {
                send.write_all(&[7u8; 16]).await.expect("write");
                let mut buf = [0u8; 16];
                recv.read_exact(&mut buf).await.expect("read");
            })
        })
    });
}

/// The floor of the machine: a blocking Unix-socket ping-pong between two threads.
fn os_floor(c: &mut Criterion) {
    let (mut near, mut far) = std::os::unix::net::UnixStream::pair().expect("pair");
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        while far.read_exact(&mut buf).is_ok() {
            if far.write_all(&buf).is_err() {
                break;
            }
        }
    });
    c.bench_function("floor/unix_socket_ping_pong_16_bytes", |b| {
        b.iter(|| {
            near.write_all(&[7u8; 16]).expect("write");
            let mut buf = [0u8; 16];
            near.read_exact(&mut buf).expect("read");
        })
    });
}

fn main() {
    kt::serve_if_worker();
    let rt = runtime();
    if std::env::args().any(|arg| arg == "head_of_line") {
        // Only the head-of-line figure: `cargo bench --bench remote -- head_of_line`.
        head_of_line(&rt);
        return;
    }
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    os_floor(&mut c);
    quinn_floor(&mut c, &rt);
    round_trips(&mut c, &rt);
    pipelined(&mut c, &rt);
    lifecycle(&mut c, &rt);
    head_of_line(&rt);
    c.final_summary();
}
