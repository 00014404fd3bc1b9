//! The scheduler: binds each pending pod to a node that can take it, and reports
//! `PodScheduled=False` with the real scheduler's message when none can.
//!
//! A node can take a pod when the pod's node selector and node affinity match the node's
//! labels, its requests fit in what is left of the node's allocatable resources (and a
//! pod IP of the node's block is free), and its required inter-pod affinity and
//! anti-affinity hold (`inter_pod`). Of the nodes that can, the pod goes to the one its
//! preferred inter-pod terms like best, and among equals to the first in configuration
//! order: pods fill the first node before the next, so where a pod lands is predictable.
//!
//! - `requests`: what a pod asks for
//! - `nodes`: each node's free resources and pods during a pass
//! - `filter`: the checks, and the `0/N nodes are available: …` message
//! - `inter_pod`: pod affinity and anti-affinity

mod filter;
mod inter_pod;
mod nodes;
mod requests;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::conditions;
use crate::events::{self, Source};
use crate::resources;
use crate::store::Key;
use inter_pod::NamespaceLabels;
use nodes::NodeState;

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded") | Some("Failed")
    )
}

fn node_name(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn creation_order(pod: &Value) -> (String, String, String) {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (
        s("/metadata/creationTimestamp"),
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

/// Every namespace's labels, for affinity terms' `namespaceSelector`.
fn namespace_labels(cluster: &Cluster) -> NamespaceLabels {
    let (namespaces, _) = cluster.store.list(resources::namespaces(), None);
    namespaces
        .iter()
        .map(|ns| {
            let name = ns
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let labels = ns
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null);
            (name, labels)
        })
        .collect()
}

/// The node `pod` goes to (an index into `nodes`), or the scheduler's message saying why
/// none can take it.
fn place(
    cluster: &Cluster,
    pod: &Value,
    nodes: &[NodeState],
    namespaces: &NamespaceLabels,
    taken: &[String],
) -> Result<usize, String> {
    if let Some(message) = cluster.faults.unschedulable_message(pod) {
        return Err(message);
    }
    let required = inter_pod::Required::of(pod, nodes, namespaces);
    let mut reasons = Vec::new();
    let mut fitting = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let misfits = filter::misfits(pod, node, &required, taken);
        if misfits.is_empty() {
            fitting.push(index);
        } else {
            reasons.extend(misfits);
        }
    }
    fitting
        .into_iter()
        .map(|index| {
            let preference = inter_pod::preference(pod, &nodes[index], nodes, namespaces);
            (index, preference)
        })
        // Best preference first, then configuration order.
        .min_by_key(|&(index, preference)| (std::cmp::Reverse(preference), index))
        .map(|(index, _)| index)
        .ok_or_else(|| filter::unschedulable_message(nodes.len(), &reasons))
}

/// One scheduling pass over every pod.
pub(crate) fn schedule(cluster: &Arc<Cluster>) {
    let (mut pods, _) = cluster.store.list(resources::pods(), None);
    pods.sort_by_key(|p| creation_order(p));
    let mut nodes: Vec<NodeState> = cluster
        .nodes()
        .map(|(config, network)| NodeState::new(config, network))
        .collect();
    for pod in pods.iter().filter(|p| !is_terminal(p)) {
        if let Some(node) = nodes.iter_mut().find(|n| n.name() == node_name(pod)) {
            node.hold(pod.clone());
        }
    }
    let mut taken_ips: Vec<String> = pods
        .iter()
        .filter_map(|p| p.pointer("/status/podIP").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let namespaces = namespace_labels(cluster);
    for pod in &pods {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let key = Key::of(resources::pods(), pod);
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !node_name(pod).is_empty() {
            // Bound already (by this scheduler, or by its creator naming a node).
            if let Some(node) = nodes.iter().find(|n| n.name() == node_name(pod)) {
                start_bound(cluster, pod, &key, uid, node, &mut taken_ips);
            }
            // Bound to a node that does not exist here: stays Pending, as it would.
            continue;
        }
        match place(cluster, pod, &nodes, &namespaces, &taken_ips) {
            Ok(index) => {
                let node = &mut nodes[index];
                // The filter saw a free address on this node.
                let Some(ip) = node.network.free(&taken_ips) else {
                    continue;
                };
                let ip = ip.to_string();
                taken_ips.push(ip.clone());
                node.hold(pod.clone());
                if let Some(bound) = bind(cluster, &key, uid, node, &ip) {
                    cluster.kubelet.start(cluster, &bound);
                }
            }
            Err(message) => {
                let changed = cluster.write_status(&key, Some(uid), |status| {
                    set_scheduled(status, false, Some("Unschedulable"), Some(&message));
                });
                // One event per change of reason, not one per scheduling pass.
                if let Some(pod) = changed {
                    events::record(
                        cluster,
                        &pod,
                        None,
                        true,
                        "FailedScheduling",
                        &message,
                        Source::Scheduler,
                    );
                }
            }
        }
    }
}

/// Starts a pod bound to `node` that the kubelet has not started yet, giving it an IP of
/// the node's first if it has none.
fn start_bound(
    cluster: &Arc<Cluster>,
    pod: &Value,
    key: &Key,
    uid: &str,
    node: &NodeState,
    taken_ips: &mut Vec<String>,
) {
    if cluster.kubelet.is_started(uid) || is_terminal(pod) {
        return;
    }
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(ip) = ip.or_else(|| Some(node.network.free(taken_ips)?.to_string())) else {
        return;
    };
    taken_ips.push(ip.clone());
    if let Some(bound) = bind(cluster, key, uid, node, &ip) {
        cluster.kubelet.start(cluster, &bound);
    }
}

fn set_scheduled(status: &mut Value, ok: bool, reason: Option<&str>, message: Option<&str>) {
    let scheduled = conditions::condition("PodScheduled", ok, reason, message);
    status["conditions"] = conditions::merge(status.get("conditions"), vec![scheduled]);
}

/// Binds the pod to `node`: `spec.nodeName`, pod and host IPs, `PodScheduled=True`.
fn bind(cluster: &Cluster, key: &Key, uid: &str, node: &NodeState, ip: &str) -> Option<Arc<Value>> {
    let name = node.name().to_string();
    let host = node.network.host_address().to_string();
    let bound = cluster.write_object(key, Some(uid), |pod| {
        pod["spec"]["nodeName"] = json!(name);
        let status = &mut pod["status"];
        if !status.is_object() {
            *status = json!({});
        }
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
        status["hostIP"] = json!(host);
        status["hostIPs"] = json!([{"ip": host}]);
        set_scheduled(status, true, None, None);
    });
    if let Some(pod) = &bound {
        let message = format!(
            "Successfully assigned {}/{} to {name}",
            key.namespace, key.name
        );
        events::record(
            cluster,
            pod,
            None,
            false,
            "Scheduled",
            &message,
            Source::Scheduler,
        );
    }
    bound.or_else(|| cluster.store.get(key))
}

/// The scheduler's loop: one pass per wake-up.
pub(crate) async fn run(cluster: Arc<Cluster>) {
    loop {
        schedule(&cluster);
        cluster.scheduler_wake.notified().await;
    }
}
