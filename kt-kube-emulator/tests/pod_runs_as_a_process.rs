//! A pod's container runs as a local process: scheduled to the emulated node, Running and
//! Ready with its own loopback pod IP; with a readiness probe it is Ready only once the
//! probe passes.

mod common;

use common::{condition, container, is_ready, phase, shell_pod, wait_pod};
use serde_json::json;

#[tokio::test]
async fn pod_is_scheduled_and_runs_with_its_own_ip() {
    let h = common::start().await;
    h.create_pod(shell_pod("runner", "exec sleep 30", "Always"))
        .await;
    let pod = wait_pod(&h.pods(), "runner", "Running and Ready", |p| {
        phase(p) == "Running" && is_ready(p)
    })
    .await;
    let status = pod.status.clone().expect("a status");
    let ip = status.pod_ip.expect("a pod IP");
    // A loopback address of this emulator's own block (127.0.1.x unless another emulator
    // on the machine holds that block), never the host's 127.0.0.x.
    let parsed: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    assert!(parsed.is_loopback() && !ip.starts_with("127.0.0."), "{ip}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(h.emulator.node_name())
    );
    assert!(condition(&pod, "PodScheduled").is_some_and(|c| c.status == "True"));
    assert!(condition(&pod, "ContainersReady").is_some_and(|c| c.status == "True"));
    let c = container(&pod).expect("a container status");
    assert_eq!(c.restart_count, 0);
    assert!(
        c.state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .is_some()
    );

    h.create_pod(shell_pod("second", "exec sleep 30", "Always"))
        .await;
    let second = wait_pod(&h.pods(), "second", "Running", |p| phase(p) == "Running").await;
    assert_ne!(second.status.and_then(|s| s.pod_ip), Some(ip));
}

#[tokio::test]
async fn readiness_probe_gates_ready() {
    let h = common::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let flag = dir.path().join("ready");
    let mut pod = shell_pod("probed", "exec sleep 30", "Always");
    pod["spec"]["containers"][0]["readinessProbe"] = json!({"exec": {"command": ["/bin/sh", "-c", format!("test -e {}", flag.display())]}, "periodSeconds": 10});
    h.create_pod(pod).await;
    let running = wait_pod(&h.pods(), "probed", "Running", |p| phase(p) == "Running").await;
    assert!(!is_ready(&running), "ready before its probe passed");
    std::fs::write(&flag, b"").expect("touch");
    wait_pod(&h.pods(), "probed", "Ready", is_ready).await;
}

#[tokio::test]
async fn never_policy_reports_success_and_failure() {
    let h = common::start().await;
    h.create_pod(shell_pod("ok", "exit 0", "Never")).await;
    h.create_pod(shell_pod("bad", "exit 3", "Never")).await;
    let ok = wait_pod(&h.pods(), "ok", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(
        common::terminated(&ok).map(|t| (t.exit_code, t.reason.clone())),
        Some((0, Some("Completed".into())))
    );
    let bad = wait_pod(&h.pods(), "bad", "Failed", |p| phase(p) == "Failed").await;
    assert_eq!(
        common::terminated(&bad).map(|t| (t.exit_code, t.reason.clone())),
        Some((3, Some("Error".into())))
    );
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_main_container() {
    let h = common::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let trail = dir.path().join("trail");
    let append = |word: &str| {
        json!([
            "/bin/sh",
            "-c",
            format!("echo {word} >> {}", trail.display())
        ])
    };
    let mut pod = shell_pod(
        "inits",
        &format!("echo main >> {}; exec sleep 30", trail.display()),
        "Always",
    );
    pod["spec"]["initContainers"] = json!([
        {"name": "first", "image": "busybox", "command": append("first")},
        {"name": "second", "image": "busybox", "command": append("second")},
    ]);
    h.create_pod(pod).await;
    let p = wait_pod(&h.pods(), "inits", "Running", |p| {
        phase(p) == "Running" && is_ready(p)
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&trail).expect("trail"),
        "first\nsecond\nmain\n"
    );
    let inits = p
        .status
        .and_then(|s| s.init_container_statuses)
        .expect("init statuses");
    assert!(inits.iter().all(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    }));

    let mut failing = shell_pod("bad-init", "exec sleep 30", "Never");
    failing["spec"]["initContainers"] =
        json!([{"name": "fails", "image": "busybox", "command": ["/bin/sh", "-c", "exit 4"]}]);
    h.create_pod(failing).await;
    let p = wait_pod(&h.pods(), "bad-init", "Failed", |p| phase(p) == "Failed").await;
    assert!(condition(&p, "Initialized").is_some_and(|c| c.status == "False"));
}
