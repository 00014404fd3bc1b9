//! Scheduling over several emulated nodes: each is a Node object with its own resources;
//! pods fill the first node that can take them, required inter-pod affinity and
//! anti-affinity decide between nodes, preferred terms break ties, and a pod no node
//! takes gets the real scheduler's `0/N nodes are available` message with counts.
//! (Loopback pods: these need no privileges.)

mod common;

use common::{Harness, condition, phase, shell_pod, wait_pod};
use k8s_openapi::api::core::v1::{Node, Pod};
use kt_kube_emulator::{EmulatorConfig, NodeConfig};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const FIRST: &str = "kt-emulator-node";
const SECOND: &str = "kt-emulator-node-2";

fn sleeper(name: &str) -> Value {
    shell_pod(name, "exec sleep 100", "Always")
}

fn unschedulable_message(p: &Pod) -> Option<String> {
    condition(p, "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .and_then(|c| c.message.clone())
}

async fn running_on(h: &Harness, name: &str) -> String {
    let pod = wait_pod(&h.pods(), name, "Running", |p| phase(p) == "Running").await;
    pod.spec
        .and_then(|s| s.node_name)
        .expect("a running pod is bound")
}

async fn unschedulable(h: &Harness, name: &str) -> String {
    let pod = wait_pod(&h.pods(), name, "unschedulable", |p| {
        unschedulable_message(p).is_some()
    })
    .await;
    assert_eq!(phase(&pod), "Pending");
    unschedulable_message(&pod).unwrap_or_default()
}

/// A required (or, with `weight`, preferred) inter-pod term of `kind` on the hostname
/// topology, selecting pods labelled `group=<group>`.
fn with_term(mut pod: Value, kind: &str, group: &str, weight: Option<i64>) -> Value {
    let term = json!({
        "labelSelector": {"matchLabels": {"group": group}},
        "topologyKey": "kubernetes.io/hostname",
    });
    pod["metadata"]["labels"]["group"] = json!(group);
    pod["spec"]["affinity"][kind] = match weight {
        None => json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]}),
        Some(weight) => json!({"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": weight, "podAffinityTerm": term}
        ]}),
    };
    pod
}

#[tokio::test]
async fn every_node_is_a_node_object_with_its_hostname_and_resources() {
    let h = common::start_with(
        EmulatorConfig::default()
            .allocatable("cpu", "3")
            .node(NodeConfig::new("gpu-node").allocatable("nvidia.com/gpu", "2")),
    )
    .await;
    assert_eq!(h.emulator.node_names(), [FIRST, "gpu-node"]);
    let nodes: Api<Node> = Api::all(h.client.clone());
    let listed = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let mut seen: Vec<(String, String, String, String)> = listed
        .items
        .iter()
        .map(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            let allocatable = n
                .status
                .as_ref()
                .and_then(|s| s.allocatable.clone())
                .unwrap_or_default();
            let q = |k: &str| allocatable.get(k).map(|q| q.0.clone()).unwrap_or_default();
            (
                n.metadata.name.clone().unwrap_or_default(),
                labels
                    .get("kubernetes.io/hostname")
                    .cloned()
                    .unwrap_or_default(),
                q("cpu"),
                q("nvidia.com/gpu"),
            )
        })
        .collect();
    seen.sort();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string();
    assert_eq!(
        seen,
        [
            ("gpu-node".into(), "gpu-node".into(), cpus, "2".into()),
            (FIRST.into(), FIRST.into(), "3".into(), "0".into()),
        ]
    );

    // A pod goes where its request fits, and gets that node's pod block.
    let mut gpu = sleeper("wants-gpu");
    gpu["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": "1"}});
    h.create_pod(gpu).await;
    h.create_pod(sleeper("anywhere")).await;
    assert_eq!(running_on(&h, "wants-gpu").await, "gpu-node");
    assert_eq!(running_on(&h, "anywhere").await, FIRST);
    let ip = |p: Pod| p.status.and_then(|s| s.pod_ip).unwrap_or_default();
    let block = |ip: String| ip.rsplit_once('.').map(|(b, _)| b.to_string());
    let on_gpu = block(ip(h.pods().get("wants-gpu").await.expect("get")));
    let on_first = block(ip(h.pods().get("anywhere").await.expect("get")));
    assert!(
        on_gpu.is_some() && on_gpu != on_first,
        "{on_gpu:?} {on_first:?}"
    );
}

#[tokio::test]
async fn requests_that_do_not_fit_the_first_node_spill_to_the_second() {
    let h = common::start_with(
        EmulatorConfig::default()
            .allocatable("cpu", "1")
            .node(NodeConfig::new(SECOND).allocatable("cpu", "1")),
    )
    .await;
    let cpu_pod = |name: &str| {
        let mut pod = sleeper(name);
        pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "600m"}});
        pod
    };
    h.create_pod(cpu_pod("a")).await;
    assert_eq!(running_on(&h, "a").await, FIRST);
    h.create_pod(cpu_pod("b")).await;
    assert_eq!(running_on(&h, "b").await, SECOND);
    h.create_pod(cpu_pod("c")).await;
    assert_eq!(
        unschedulable(&h, "c").await,
        "0/2 nodes are available: 2 Insufficient cpu."
    );
}

#[tokio::test]
async fn required_anti_affinity_puts_pods_on_different_nodes() {
    let h = common::start_with(EmulatorConfig::default().nodes(2)).await;
    for name in ["apart-0", "apart-1", "apart-2"] {
        h.create_pod(with_term(sleeper(name), "podAntiAffinity", "apart", None))
            .await;
    }
    let first = running_on(&h, "apart-0").await;
    let second = running_on(&h, "apart-1").await;
    assert_ne!(first, second);
    assert_eq!(
        unschedulable(&h, "apart-2").await,
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
    );
    // Symmetry: a pod without terms that the placed pods' anti-affinity selects is
    // kept off their nodes too.
    let mut plain = sleeper("selected");
    plain["metadata"]["labels"]["group"] = json!("apart");
    h.create_pod(plain).await;
    assert_eq!(
        unschedulable(&h, "selected").await,
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules."
    );
}

#[tokio::test]
async fn required_affinity_puts_pods_on_the_same_node() {
    let h = common::start_with(EmulatorConfig::default().nodes(2)).await;
    // The anchor is on the second node, where first fit would not put the others.
    let mut anchor = sleeper("anchor");
    anchor["metadata"]["labels"]["group"] = json!("together");
    anchor["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": SECOND});
    h.create_pod(anchor).await;
    assert_eq!(running_on(&h, "anchor").await, SECOND);
    for name in ["with-0", "with-1"] {
        h.create_pod(with_term(sleeper(name), "podAffinity", "together", None))
            .await;
        assert_eq!(running_on(&h, name).await, SECOND);
    }
    // A pod whose affinity selects nobody and not itself fits nowhere; one that selects
    // itself starts the group on the first node that has the topology label.
    let mut lonely = with_term(sleeper("lonely"), "podAffinity", "nobody", None);
    lonely["metadata"]["labels"]["group"] = json!("someone-else");
    h.create_pod(lonely).await;
    assert_eq!(
        unschedulable(&h, "lonely").await,
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    );
    h.create_pod(with_term(sleeper("founder"), "podAffinity", "new", None))
        .await;
    assert_eq!(running_on(&h, "founder").await, FIRST);
}

#[tokio::test]
async fn preferred_anti_affinity_spreads_while_it_can_then_packs() {
    let h = common::start_with(EmulatorConfig::default().nodes(2)).await;
    let mut nodes = Vec::new();
    for name in ["spread-0", "spread-1", "spread-2"] {
        h.create_pod(with_term(
            sleeper(name),
            "podAntiAffinity",
            "spread",
            Some(100),
        ))
        .await;
        nodes.push(running_on(&h, name).await);
    }
    // Third: both nodes hold one matching pod; the tie goes to the first node.
    assert_eq!(nodes, [FIRST, SECOND, FIRST]);
}

#[tokio::test]
async fn an_unschedulable_message_counts_each_reason_over_the_nodes() {
    let h = common::start_with(
        EmulatorConfig::default()
            .node_label("pool", "a")
            .node(
                NodeConfig::new("b-1")
                    .label("pool", "b")
                    .allocatable("cpu", "1"),
            )
            .node(
                NodeConfig::new("b-2")
                    .label("pool", "b")
                    .allocatable("cpu", "1"),
            ),
    )
    .await;
    let mut pod = sleeper("big");
    pod["spec"]["nodeSelector"] = json!({"pool": "b"});
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "2", "memory": "1Gi"}});
    h.create_pod(pod).await;
    assert_eq!(
        unschedulable(&h, "big").await,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         2 Insufficient cpu."
    );
}

#[tokio::test]
async fn a_pod_bound_to_a_node_by_name_runs_there_with_that_nodes_host_ip() {
    let h = common::start_with(EmulatorConfig::default().nodes(3)).await;
    let mut pod = sleeper("pinned");
    pod["spec"]["nodeName"] = json!("kt-emulator-node-3");
    h.create_pod(pod).await;
    assert_eq!(running_on(&h, "pinned").await, "kt-emulator-node-3");
    let status = h.pods().get("pinned").await.expect("get").status;
    let host_ip = status.and_then(|s| s.host_ip);
    let expected = h.emulator.node_host_address("kt-emulator-node-3");
    assert_eq!(host_ip, expected.map(|ip| ip.to_string()));
    assert_eq!(h.emulator.node_host_address("no-such-node"), None);
}
