//! An injected OOM kill: the container is reported as terminated OOMKilled with exit code 137.

mod common;

use common::{phase, shell_pod, terminated, wait_pod};

#[tokio::test]
async fn oom_kill_is_reported_as_oomkilled() {
    let h = common::start().await;
    h.create_pod(shell_pod("hog", "exec sleep 100", "Never"))
        .await;
    wait_pod(&h.pods(), "hog", "Running", |p| phase(p) == "Running").await;
    h.emulator.oom_kill("default", "hog").expect("the pod runs");
    let p = wait_pod(&h.pods(), "hog", "Failed", |p| phase(p) == "Failed").await;
    let t = terminated(&p).expect("terminated");
    assert_eq!((t.reason.as_deref(), t.exit_code), (Some("OOMKilled"), 137));
    assert!(h.emulator.oom_kill("default", "nope").is_err());
}

#[tokio::test]
async fn oom_killed_container_restarts_under_always() {
    let h = common::start().await;
    h.create_pod(shell_pod("hog2", "exec sleep 100", "Always"))
        .await;
    wait_pod(&h.pods(), "hog2", "Running", |p| phase(p) == "Running").await;
    h.emulator
        .oom_kill("default", "hog2")
        .expect("the pod runs");
    let p = wait_pod(&h.pods(), "hog2", "restarted", |p| {
        common::container(p).is_some_and(|c| {
            c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
        })
    })
    .await;
    let last = common::container(&p)
        .and_then(|c| c.last_state.clone())
        .and_then(|s| s.terminated)
        .expect("lastState");
    assert_eq!(last.reason.as_deref(), Some("OOMKilled"));
}
