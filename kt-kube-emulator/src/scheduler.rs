//! The scheduler: binds pending pods to the one emulated node when their requests fit in
//! what is left of its allocatable resources and their node selector / affinity matches,
//! and reports `PodScheduled=False` with the real scheduler's message otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::events::{self, Source};
use crate::quantity::parse_milli;
use crate::resources;
use crate::selector::node_affinity_matches;
use crate::store::Key;
use crate::time;

/// Resource name → milli-units.
type Amounts = BTreeMap<String, i128>;

/// A pod's requests: per container, `requests` or else `limits`; plus one `pods` slot.
fn requests(pod: &Value) -> Amounts {
    let mut total = Amounts::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut mine: BTreeMap<String, i128> = BTreeMap::new();
        for field in ["limits", "requests"] {
            if let Some(map) = c
                .pointer(&format!("/resources/{field}"))
                .and_then(Value::as_object)
            {
                for (k, v) in map {
                    if let Some(q) = v
                        .as_str()
                        .and_then(parse_milli)
                        .or_else(|| v.as_i64().map(|n| i128::from(n) * 1000))
                    {
                        mine.insert(k.clone(), q);
                    }
                }
            }
        }
        for (k, v) in mine {
            *total.entry(k).or_default() += v;
        }
    }
    *total.entry("pods".into()).or_default() += 1000;
    total
}

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

/// Why a pod does not fit, in the scheduler's words, or `None` if it fits.
fn misfit(cluster: &Cluster, pod: &Value, free: &Amounts) -> Option<String> {
    if let Some(message) = cluster.faults.unschedulable_message(pod) {
        return Some(message);
    }
    let labels = json!(cluster.config.node_labels);
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    if !selector_ok || !node_affinity_matches(pod.pointer("/spec/affinity"), &labels) {
        return Some(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.".into(),
        );
    }
    let mut reasons = Vec::new();
    for (resource, want) in requests(pod) {
        if want <= 0 {
            continue;
        }
        let have = free.get(&resource).copied().unwrap_or(0);
        if want > have {
            reasons.push(if resource == "pods" {
                "1 Too many pods".to_string()
            } else {
                format!("1 Insufficient {resource}")
            });
        }
    }
    if reasons.is_empty() {
        None
    } else {
        reasons.sort();
        Some(format!("0/1 nodes are available: {}.", reasons.join(", ")))
    }
}

/// One scheduling pass over every pod.
pub(crate) fn schedule(cluster: &Arc<Cluster>) {
    let node = cluster.config.node_name.clone();
    let allocatable: Amounts = cluster
        .config
        .allocatable
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), parse_milli(v)?)))
        .collect();
    let (mut pods, _) = cluster.store.list(resources::pods(), None);
    pods.sort_by_key(|p| creation_order(p));
    let mut free = allocatable.clone();
    let mut taken_ips = Vec::new();
    for pod in pods
        .iter()
        .filter(|p| node_name(p) == node && !is_terminal(p))
    {
        for (k, v) in requests(pod) {
            *free.entry(k).or_default() -= v;
        }
    }
    for pod in &pods {
        if let Some(ip) = pod.pointer("/status/podIP").and_then(Value::as_str) {
            taken_ips.push(ip.to_string());
        }
    }
    for pod in &pods {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let key = Key::of(resources::pods(), pod);
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bound_here = node_name(pod) == node;
        if !node_name(pod).is_empty() && !bound_here {
            continue; // Bound to a node that does not exist here: stays Pending, as it would.
        }
        if bound_here {
            if !cluster.kubelet.is_started(uid) && !is_terminal(pod) {
                let ip = pod
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let Some(ip) = ip.or_else(|| Some(cluster.network.free(&taken_ips)?.to_string()))
                else {
                    continue;
                };
                taken_ips.push(ip.clone());
                if let Some(bound) = bind(cluster, &key, uid, &ip) {
                    cluster.kubelet.start(cluster, &bound);
                }
            }
            continue;
        }
        match misfit(cluster, pod, &free) {
            None => {
                let Some(ip) = cluster.network.free(&taken_ips) else {
                    let message = "0/1 nodes are available: 1 Too many pods.".to_string();
                    cluster.write_status(&key, Some(uid), |status| {
                        set_scheduled(status, false, Some("Unschedulable"), Some(&message));
                    });
                    continue;
                };
                for (k, v) in requests(pod) {
                    *free.entry(k).or_default() -= v;
                }
                let ip = ip.to_string();
                taken_ips.push(ip.clone());
                if let Some(bound) = bind(cluster, &key, uid, &ip) {
                    cluster.kubelet.start(cluster, &bound);
                }
            }
            Some(message) => {
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

fn set_scheduled(status: &mut Value, ok: bool, reason: Option<&str>, message: Option<&str>) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let mut c = json!({"type": "PodScheduled", "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    if let Some(conds) = status["conditions"].as_array_mut() {
        match conds.iter_mut().find(|x| x["type"] == "PodScheduled") {
            Some(existing) => {
                let same = existing["status"] == c["status"];
                c["lastTransitionTime"] = if same {
                    existing["lastTransitionTime"].clone()
                } else {
                    json!(time::now())
                };
                *existing = c;
            }
            None => {
                c["lastTransitionTime"] = json!(time::now());
                conds.push(c);
            }
        }
    }
}

/// Binds the pod to the node: `spec.nodeName`, pod and host IPs, `PodScheduled=True`.
fn bind(cluster: &Cluster, key: &Key, uid: &str, ip: &str) -> Option<Arc<Value>> {
    let node = cluster.config.node_name.clone();
    let bound = cluster.write_object(key, Some(uid), |pod| {
        pod["spec"]["nodeName"] = json!(node);
        let status = &mut pod["status"];
        if !status.is_object() {
            *status = json!({});
        }
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
        let host = cluster.network.host_address().to_string();
        status["hostIP"] = json!(host);
        status["hostIPs"] = json!([{"ip": host}]);
        set_scheduled(status, true, None, None);
    });
    if let Some(pod) = &bound {
        let message = format!(
            "Successfully assigned {}/{} to {node}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_back_to_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}, "requests": {"cpu": "500m"}}},
            {"resources": {"limits": {"memory": "1Gi"}}}
        ]}});
        let r = requests(&pod);
        assert_eq!(r.get("cpu"), Some(&500));
        assert_eq!(r.get("nvidia.com/gpu"), Some(&1000));
        assert_eq!(r.get("memory"), Some(&(1000 * (1 << 30))));
        assert_eq!(r.get("pods"), Some(&1000));
    }
}
