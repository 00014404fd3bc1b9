//! An injected eviction: processes killed, phase Failed, reason Evicted, the kubelet's
//! message and a DisruptionTarget condition; the pod object stays.

mod common;

use common::{condition, phase, shell_pod, wait_pod};

#[tokio::test]
async fn eviction_fails_the_pod_with_reason_evicted() {
    let h = common::start().await;
    h.create_pod(shell_pod("evictee", "exec sleep 100", "Always"))
        .await;
    wait_pod(&h.pods(), "evictee", "Running", |p| phase(p) == "Running").await;
    h.emulator
        .evict("default", "evictee")
        .expect("the pod runs");
    let p = wait_pod(&h.pods(), "evictee", "Failed", |p| phase(p) == "Failed").await;
    let status = p.status.clone().expect("status");
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .starts_with("The node was low on resource: memory.")
    );
    let disruption = condition(&p, "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(
        (disruption.status.as_str(), disruption.reason.as_deref()),
        ("True", Some("TerminationByKubelet"))
    );
    assert!(common::terminated(&p).is_some());
}
