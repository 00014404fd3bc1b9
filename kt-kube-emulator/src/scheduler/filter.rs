//! Whether a pending pod fits a node, and the real scheduler's message when it fits none.
//!
//! Checks run in the order of the real scheduler's filter plugins, and a node reports the
//! reasons of the first check it fails: node selector and node affinity, then resources
//! (every resource that is short), then inter-pod affinity.

use serde_json::Value;

use super::inter_pod::{Refusal, Required};
use super::nodes::NodeState;
use super::requests::requests;
use crate::selector::node_affinity_matches;

/// Why a node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reason {
    /// `nodeSelector` or required node affinity does not match the node's labels.
    NodeAffinity,
    /// Less of this resource is free than the pod requests.
    Insufficient(String),
    /// No pod slot (`pods` allocatable) or no pod IP is left.
    TooManyPods,
    /// Inter-pod affinity or anti-affinity.
    InterPod(Refusal),
}

impl Reason {
    /// The reason as the scheduler words it in `0/N nodes are available: …`.
    fn text(&self) -> String {
        match self {
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Insufficient(resource) => format!("Insufficient {resource}"),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::InterPod(refusal) => refusal.text().into(),
        }
    }
}

/// Why `node` cannot take `pod` (empty: it can). `taken` lists the pod IPs in use.
pub(super) fn misfits(
    pod: &Value,
    node: &NodeState,
    inter_pod: &Required,
    taken: &[String],
) -> Vec<Reason> {
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)));
    if !selector_ok || !node_affinity_matches(pod.pointer("/spec/affinity"), &node.labels) {
        return vec![Reason::NodeAffinity];
    }
    let mut short = Vec::new();
    for (resource, want) in requests(pod) {
        if want <= 0 {
            continue;
        }
        let have = node.free.get(&resource).copied().unwrap_or(0);
        let ip_left = resource != "pods" || node.network.free(taken).is_some();
        if want > have || !ip_left {
            short.push(if resource == "pods" {
                Reason::TooManyPods
            } else {
                Reason::Insufficient(resource)
            });
        }
    }
    if !short.is_empty() {
        return short;
    }
    inter_pod
        .refusal(node)
        .map(Reason::InterPod)
        .into_iter()
        .collect()
}

/// `0/N nodes are available: …` for a pod that fits none of `nodes` nodes, with each
/// reason counted over the nodes that gave it and sorted as the scheduler sorts them.
pub(super) fn unschedulable_message(nodes: usize, reasons: &[Reason]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for reason in reasons {
        let text = reason.text();
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_over_nodes_and_sorted() {
        let reasons = [
            Reason::InterPod(Refusal::AntiAffinity),
            Reason::Insufficient("cpu".into()),
            Reason::Insufficient("memory".into()),
            Reason::InterPod(Refusal::AntiAffinity),
        ];
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, \
             2 node(s) didn't match pod anti-affinity rules."
        );
        assert_eq!(
            unschedulable_message(1, &[Reason::TooManyPods]),
            "0/1 nodes are available: 1 Too many pods."
        );
    }
}
