//! The scheduler and the kubelet record Events about pods, as `kubectl describe` shows them.

mod common;

use common::{phase, shell_pod, wait_pod};
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;

async fn reasons(h: &common::Harness, pod: &str) -> Vec<String> {
    let params = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    let events = h.api::<Event>().list(&params).await.expect("list events");
    // Lists are ordered by name (random suffixes here), not by time.
    let mut reasons: Vec<String> = events.items.into_iter().filter_map(|e| e.reason).collect();
    reasons.sort();
    reasons
}

#[tokio::test]
async fn scheduling_and_start_are_recorded() {
    let h = common::start().await;
    h.create_pod(shell_pod("described", "exec sleep 100", "Always"))
        .await;
    wait_pod(&h.pods(), "described", "Running", |p| phase(p) == "Running").await;
    assert_eq!(
        reasons(&h, "described").await,
        ["Created", "Pulled", "Scheduled", "Started"]
    );

    h.emulator
        .make_unschedulable("0/1 nodes are available: 1 node(s) were unschedulable.");
    h.create_pod(shell_pod("stuck", "exec sleep 100", "Always"))
        .await;
    wait_pod(&h.pods(), "stuck", "unschedulable", |p| {
        common::condition(p, "PodScheduled").is_some_and(|c| c.status == "False")
    })
    .await;
    assert_eq!(reasons(&h, "stuck").await, ["FailedScheduling"]);
}
