//! Kubernetes placement figures, against the API-server emulator (the pods are local
//! processes, so the figures are kt's share, without image pulls or a real scheduler):
//! spawn to first reply, and the part of it that follows the pod's readiness — the
//! attach over QUIC and the first call.
//!
//! `cargo bench --bench kubernetes`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kt_k8s::Reach;
use kt_kube_emulator::{Emulator, EmulatorConfig};

#[kt::actor]
pub struct Pinger;

#[kt::actor]
impl Pinger {
    pub fn new() -> Self {
        Pinger
    }

    pub fn ping(&self) -> u32 {
        1
    }
}

fn main() {
    kt::serve_if_worker();
    let rt = support::runtime();
    let (emulator, placements, _dir) = rt.block_on(async {
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        emulator.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let mut placements = Vec::new();
        for (name, reach) in [
            ("direct", Reach::Direct),
            ("port_forward", Reach::PortForward),
        ] {
            let k8s = kt::Kubernetes::builder()
                .kubeconfig(&kubeconfig)
                .image("kt-bench:local")
                .this_binary()
                .expect("this binary")
                .reach(reach)
                .quiet()
                .connect()
                .await
                .expect("connect");
            placements.push((name, k8s));
        }
        (emulator, placements, dir)
    });
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    for (name, k8s) in placements {
        bench_reach(&mut c, &rt, name, k8s);
    }
    c.final_summary();
    drop(emulator);
}

/// Spawn figures for one way of reaching the pods.
fn bench_reach(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, k8s: kt::Kubernetes) {
    let placement: Arc<dyn kt::Placement> = Arc::new(k8s.clone());
    let mut group = c.benchmark_group(format!("kubernetes/{name}"));
    group.bench_function("spawn_to_first_reply", |b| {
        b.iter_custom(|iters| {
            let placement = placement.clone();
            support::run_as_task(rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let pinger = Pinger::spawn().on(placement.clone()).await.expect("spawn");
                    pinger.ping().await.expect("ping");
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.bench_function("pod_ready_to_first_reply", |b| {
        b.iter_custom(|iters| {
            let placement = placement.clone();
            let k8s = k8s.clone();
            support::run_as_task(rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let pinger = Pinger::spawn().on(placement.clone()).await.expect("spawn");
                    let start = Instant::now();
                    pinger.ping().await.expect("ping");
                    let first_call = start.elapsed();
                    let timing = k8s.recent_spawns().pop().expect("a timing");
                    total += timing.ready_to_attached + first_call;
                }
                total
            })
        })
    });
    group.finish();
}
