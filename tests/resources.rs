//! The local-process backend reserves CPUs and GPUs: GPU actors get disjoint devices, a
//! spawn that does not fit fails (or waits, by option), and a dead worker's resources
//! are free again. Settings only a pod can honour are refused, not ignored.

mod support;

use std::sync::Arc;

use kt::prelude::*;
use support::EnvReader;

fn gpu() -> Compute {
    Compute::new().cpus(1.0).gpus(1)
}

#[kt::test]
async fn gpu_actors_get_disjoint_devices_and_wait_or_fail_when_none_is_free() {
    let budget: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::with_resources(4.0, 2));
    let a = EnvReader::spawn()
        .compute(gpu())
        .on(budget.clone())
        .await
        .unwrap();
    let b = EnvReader::spawn()
        .compute(gpu())
        .on(budget.clone())
        .await
        .unwrap();
    let devices = |actor: &ActorRef<EnvReader>| actor.var("CUDA_VISIBLE_DEVICES".into());
    let (dev_a, dev_b) = (devices(&a).await.unwrap(), devices(&b).await.unwrap());
    assert_eq!(
        [dev_a.clone(), dev_b.clone()]
            .map(Option::unwrap_or_default)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        ["0".to_string(), "1".to_string()].into_iter().collect()
    );

    let full = EnvReader::spawn().compute(gpu()).on(budget.clone()).await;
    assert!(
        matches!(full, Err(Error::InsufficientResources { .. })),
        "{full:?}"
    );

    let waiting = tokio::spawn({
        let budget = budget.clone();
        async move {
            EnvReader::spawn()
                .compute(gpu())
                .wait_for_resources()
                .on(budget)
                .await
        }
    });
    a.kill();
    let c = waiting.await.unwrap().expect("spawned once a GPU was free");
    assert_eq!(
        devices(&c).await.unwrap(),
        dev_a,
        "got the GPU the killed actor gave back"
    );
}

#[kt::test]
async fn actors_without_gpus_see_none_and_get_their_compute_env() {
    let budget: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::with_resources(2.0, 1));
    let cpu = EnvReader::spawn()
        .compute(Compute::new().env("KT_TEST_ROLE", "reader"))
        .on(budget)
        .await
        .unwrap();
    assert_eq!(
        cpu.var("CUDA_VISIBLE_DEVICES".into()).await.unwrap(),
        Some(String::new())
    );
    assert_eq!(
        cpu.var("KT_TEST_ROLE".into()).await.unwrap(),
        Some("reader".to_string())
    );
}

#[kt::test]
async fn a_request_larger_than_the_machine_fails_even_when_waiting() {
    let budget: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::with_resources(2.0, 0));
    let err = EnvReader::spawn()
        .compute(Compute::new().gpus(1))
        .wait_for_resources()
        .on(budget)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("this machine has 2 CPUs and 0 GPUs"),
        "{err}"
    );
}

/// Rule L1 and "stopping releases its resources": once the last handle is dropped, the
/// worker process exits (it used to linger, its runtime waiting on a thread parked on
/// the stdin pipe the driver holds open) and its CPUs are free for the next spawn.
#[kt::test]
async fn dropping_the_last_handle_ends_the_worker_process_and_frees_its_cpus() {
    let budget: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::with_resources(2.0, 0));
    let all_cpus = || Compute::new().cpus(2.0);
    let first = EnvReader::spawn()
        .compute(all_cpus())
        .on(budget.clone())
        .await
        .unwrap();
    let pid = first.pid().await.unwrap();
    drop(first);
    // The CPUs come back only when the worker process has exited and been reaped.
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        EnvReader::spawn()
            .compute(all_cpus())
            .wait_for_resources()
            .on(budget.clone()),
    )
    .await
    .expect("the released worker exits and gives its CPUs back")
    .unwrap();
    assert_ne!(next.pid().await.unwrap(), pid);
    // SAFETY: kill(2) with signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    assert!(!alive, "worker {pid} is still running after its release");
}

#[kt::test]
async fn a_local_process_refuses_pod_only_settings_and_names_each_one() {
    let local: Arc<dyn kt::Placement> = Arc::new(kt::LocalProcess::new());
    let spawned = EnvReader::spawn()
        .compute(
            Compute::new()
                .cpus(1.0)
                .image("ghcr.io/team/rl:1")
                .node_selector("pool", "gpu"),
        )
        .on(local.clone())
        .await;
    match spawned {
        Err(Error::InvalidOptions { problems }) => {
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems[0].contains("`Compute::image`"), "{problems:?}");
            assert!(
                problems[1].contains("`Compute::node_selector`"),
                "{problems:?}"
            );
        }
        other => panic!("expected InvalidOptions, got {:?}", other.map(|_| ())),
    }
    // What a local process honours is fine.
    let fine = EnvReader::spawn()
        .compute(Compute::new().cpus(1.0).env("KT_TEST_ROLE", "local"))
        .on(local)
        .await
        .unwrap();
    assert_eq!(
        fine.var("KT_TEST_ROLE".into()).await.unwrap().as_deref(),
        Some("local")
    );
}
