//! Deleting a pod: watchers see MODIFIED with a deletionTimestamp, then DELETED; the process
//! gets SIGTERM, then SIGKILL after the (capped) grace period, and is gone.
//! (Scripts write `$$$$` for the shell's `$$`: Kubernetes turns `$$` into `$` in commands.)

mod common;

use std::path::Path;
use std::time::Duration;

use common::{phase, shell_pod, wait_deleted, wait_pod};
use futures_util::{StreamExt, TryStreamExt};
use kt_kube_emulator::EmulatorConfig;
use kube::api::{DeleteParams, LogParams, WatchEvent, WatchParams};

async fn pid_of(h: &common::Harness, name: &str) -> u32 {
    let pods = h.pods();
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines =
        futures_util::AsyncBufReadExt::lines(pods.log_stream(name, &params).await.expect("stream"));
    let line = tokio::time::timeout(common::WAIT, lines.try_next())
        .await
        .expect("in time")
        .expect("ok");
    line.and_then(|l| l.trim().parse().ok())
        .expect("the pid line")
}

#[tokio::test]
async fn delete_terminates_the_process_and_watchers_see_both_steps() {
    let h = common::start().await;
    h.create_pod(shell_pod("victim", "echo $$$$; exec sleep 1000", "Always"))
        .await;
    let pod = wait_pod(&h.pods(), "victim", "Running", |p| phase(p) == "Running").await;
    let pid = pid_of(&h, "victim").await;
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let rv = pod.metadata.resource_version.clone().expect("rv");
    let mut events = h
        .pods()
        .watch(&WatchParams::default().fields("metadata.name=victim"), &rv)
        .await
        .expect("watch")
        .boxed();
    h.pods()
        .delete("victim", &DeleteParams::default())
        .await
        .expect("delete");
    let mut saw_deletion_timestamp = false;
    loop {
        match tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok")
        {
            Some(WatchEvent::Modified(p)) => {
                saw_deletion_timestamp |= p.metadata.deletion_timestamp.is_some()
            }
            Some(WatchEvent::Deleted(_)) => break,
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        saw_deletion_timestamp,
        "no MODIFIED with a deletionTimestamp before DELETED"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived its pod"
    );
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_cap() {
    let config = EmulatorConfig::default().max_grace_period(Duration::from_millis(200));
    let h = common::start_with(config).await;
    h.create_pod(shell_pod(
        "stubborn",
        "trap '' TERM; echo $$$$; while true; do sleep 0.05; done",
        "Always",
    ))
    .await;
    wait_pod(&h.pods(), "stubborn", "Running", |p| phase(p) == "Running").await;
    let pid = pid_of(&h, "stubborn").await;
    h.pods()
        .delete("stubborn", &DeleteParams::default().grace_period(30))
        .await
        .expect("delete");
    wait_deleted(&h.pods(), "stubborn").await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived"
    );
}

#[tokio::test]
async fn dropping_the_emulator_kills_every_process() {
    let h = common::start().await;
    h.create_pod(shell_pod("orphan", "echo $$$$; exec sleep 1000", "Always"))
        .await;
    wait_pod(&h.pods(), "orphan", "Running", |p| phase(p) == "Running").await;
    let pid = pid_of(&h, "orphan").await;
    drop(h);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} outlived the emulator"
    );
}
