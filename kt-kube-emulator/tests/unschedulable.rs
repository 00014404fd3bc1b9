//! Scheduling against the emulated node: requests that do not fit, node selectors, and the
//! forced-unschedulable injection, each seen through a watch.

mod common;

use common::{condition, phase, shell_pod, wait_pod};
use k8s_openapi::api::core::v1::Pod;
use kt_kube_emulator::EmulatorConfig;
use kube::api::DeleteParams;
use serde_json::json;

fn gpu_pod(name: &str, gpus: u32) -> serde_json::Value {
    let mut pod = shell_pod(name, "exec sleep 100", "Always");
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": gpus.to_string()}});
    pod
}

fn unschedulable_message(p: &Pod) -> Option<String> {
    condition(p, "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .and_then(|c| c.message.clone())
}

#[tokio::test]
async fn insufficient_resources_wait_until_freed() {
    let h = common::start_with(EmulatorConfig::default().allocatable("nvidia.com/gpu", "1")).await;
    h.create_pod(gpu_pod("too-big", 2)).await;
    let big = wait_pod(&h.pods(), "too-big", "unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    assert_eq!(
        unschedulable_message(&big).as_deref(),
        Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    );
    assert_eq!(phase(&big), "Pending");

    h.create_pod(gpu_pod("first", 1)).await;
    wait_pod(&h.pods(), "first", "Running", |p| phase(p) == "Running").await;
    h.create_pod(gpu_pod("second", 1)).await;
    wait_pod(&h.pods(), "second", "unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    h.pods()
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    wait_pod(&h.pods(), "second", "Running once the GPU is free", |p| {
        phase(p) == "Running"
    })
    .await;
}

#[tokio::test]
async fn node_selector_mismatch_is_unschedulable() {
    let h = common::start_with(EmulatorConfig::default().node_label("pool", "cpu")).await;
    let mut pod = shell_pod("picky", "exec sleep 100", "Always");
    pod["spec"]["nodeSelector"] = json!({"pool": "gpu"});
    h.create_pod(pod).await;
    let p = wait_pod(&h.pods(), "picky", "unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    assert_eq!(
        unschedulable_message(&p).as_deref(),
        Some("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
    );
    let mut fits = shell_pod("fits", "exec sleep 100", "Always");
    fits["spec"]["nodeSelector"] = json!({"pool": "cpu"});
    h.create_pod(fits).await;
    wait_pod(&h.pods(), "fits", "Running", |p| phase(p) == "Running").await;
}

#[tokio::test]
async fn forced_unschedulable_by_selector_then_cleared() {
    let h = common::start().await;
    let message = "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.";
    h.emulator
        .make_unschedulable_matching("test=blocked", message)
        .expect("a valid selector");
    h.create_pod(shell_pod("blocked", "exec sleep 100", "Always"))
        .await;
    h.create_pod(shell_pod("free", "exec sleep 100", "Always"))
        .await;
    let p = wait_pod(&h.pods(), "blocked", "unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    assert_eq!(unschedulable_message(&p).as_deref(), Some(message));
    wait_pod(&h.pods(), "free", "Running", |p| phase(p) == "Running").await;
    h.emulator.clear_unschedulable();
    wait_pod(&h.pods(), "blocked", "Running", |p| phase(p) == "Running").await;
}
