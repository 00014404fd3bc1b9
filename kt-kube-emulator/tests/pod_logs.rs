//! `pods/log`: whole, tail, follow until the process exits, previous instance.

mod common;

use common::{phase, shell_pod, wait_pod};
use futures_util::{AsyncBufReadExt, TryStreamExt};
use kube::api::LogParams;

#[tokio::test]
async fn plain_and_tail_logs() {
    let h = common::start().await;
    h.create_pod(shell_pod(
        "talker",
        "for i in 1 2 3 4; do echo line$i; done; echo oops >&2",
        "Never",
    ))
    .await;
    wait_pod(&h.pods(), "talker", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let all = h
        .pods()
        .logs("talker", &LogParams::default())
        .await
        .expect("logs");
    assert!(
        all.starts_with("line1\nline2\nline3\nline4\n") && all.contains("oops"),
        "{all:?}"
    );
    let tail = h
        .pods()
        .logs(
            "talker",
            &LogParams {
                tail_lines: Some(2),
                ..LogParams::default()
            },
        )
        .await
        .expect("tail");
    assert_eq!(tail.lines().count(), 2, "{tail:?}");
}

#[tokio::test]
async fn follow_streams_until_the_process_exits() {
    let h = common::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let go = dir.path().join("go");
    // The process prints, then waits for the test's signal (a file) and prints again.
    let script = format!(
        "echo first; while [ ! -e {0} ]; do sleep 0.01; done; echo second",
        go.display()
    );
    h.create_pod(shell_pod("follower", &script, "Never")).await;
    wait_pod(&h.pods(), "follower", "Running", |p| phase(p) == "Running").await;
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = h
        .pods()
        .log_stream("follower", &params)
        .await
        .expect("stream")
        .lines();
    let first = tokio::time::timeout(common::WAIT, lines.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert_eq!(first.as_deref(), Some("first"));
    std::fs::write(&go, b"").expect("signal the process");
    let rest: Vec<String> = tokio::time::timeout(common::WAIT, lines.try_collect())
        .await
        .expect("ends")
        .expect("ok");
    assert_eq!(rest, ["second"]);
}

#[tokio::test]
async fn previous_instance_logs_after_a_restart() {
    let h = common::start().await;
    h.create_pod(shell_pod("restarter", "echo run; exit 1", "Always"))
        .await;
    wait_pod(&h.pods(), "restarter", "restarted", |p| {
        common::container(p).is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    let previous = h
        .pods()
        .logs(
            "restarter",
            &LogParams {
                previous: true,
                ..LogParams::default()
            },
        )
        .await
        .expect("logs");
    assert_eq!(previous, "run\n");
}
