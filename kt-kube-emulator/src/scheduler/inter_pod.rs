//! Inter-pod affinity and anti-affinity, as the real scheduler's `InterPodAffinity` plugin
//! applies them.
//!
//! A term selects pods (its `labelSelector`, in its namespaces) and names a node label,
//! its `topologyKey`; nodes with the same value of that label are one domain
//! (`kubernetes.io/hostname`: one node). Required terms filter:
//!
//! - affinity: the node's domain must hold a pod matching every affinity term of the pod;
//!   except that, when no pod anywhere does and the pod matches its own terms, any node
//!   with the topology labels will do (the first member of a group that packs itself);
//! - anti-affinity: the node's domain must hold no pod matching one of the pod's terms;
//! - symmetry: the node's domain must hold no pod whose own required anti-affinity term
//!   matches the incoming pod.
//!
//! Preferred terms score the nodes that pass: each pod in the node's domain matching a
//! preferred affinity term adds the term's weight, each matching a preferred anti-affinity
//! term subtracts it. `matchLabelKeys` and `mismatchLabelKeys` are not read.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::nodes::NodeState;
use crate::selector::LabelSelector;

/// Namespace name → its labels (for `namespaceSelector`).
pub(super) type NamespaceLabels = BTreeMap<String, Value>;

/// A topology domain: (`topologyKey`, the nodes' value of it) → pods counted there.
type Counts = HashMap<(String, String), u32>;

/// Why a node fails the pod's inter-pod terms, in the real scheduler's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The pod's required affinity is not met there.
    Affinity,
    /// A pod the pod's required anti-affinity selects is there.
    AntiAffinity,
    /// A pod there has required anti-affinity against the incoming pod.
    ExistingAntiAffinity,
}

impl Refusal {
    /// The scheduler's reason text.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Affinity => "node(s) didn't match pod affinity rules",
            Refusal::AntiAffinity => "node(s) didn't match pod anti-affinity rules",
            Refusal::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules"
            }
        }
    }
}

/// One `PodAffinityTerm`, resolved against the namespace of the pod that carries it.
struct Term {
    /// `None` (no selector, or one that does not parse) selects no pod.
    selector: Option<LabelSelector>,
    /// Listed namespaces; with `namespace_selector`, also those it selects.
    namespaces: Vec<String>,
    namespace_selector: Option<LabelSelector>,
    topology_key: String,
}

impl Term {
    fn parse(term: &Value, own_namespace: &str) -> Term {
        let mut namespaces: Vec<String> = term
            .get("namespaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let namespace_selector = term
            .get("namespaceSelector")
            .filter(|s| !s.is_null())
            .and_then(|s| LabelSelector::from_json(s).ok());
        // Neither field: the pod's own namespace, as the API defaults it.
        if namespaces.is_empty() && term.get("namespaceSelector").is_none_or(Value::is_null) {
            namespaces.push(own_namespace.to_string());
        }
        Term {
            selector: term
                .get("labelSelector")
                .and_then(|s| LabelSelector::from_json(s).ok()),
            namespaces,
            namespace_selector,
            topology_key: term
                .get("topologyKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Whether the term selects `pod`.
    fn selects(&self, pod: &Value, namespaces: &NamespaceLabels) -> bool {
        let Some(selector) = &self.selector else {
            return false;
        };
        let namespace = text(pod, "/metadata/namespace");
        let in_namespace = self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(namespaces.get(namespace)));
        in_namespace && selector.matches_object(pod)
    }

    /// The domain of `node` for this term, if the node has the topology label.
    fn domain(&self, node: &NodeState) -> Option<(String, String)> {
        let value = node.label(&self.topology_key)?;
        Some((self.topology_key.clone(), value.to_string()))
    }
}

fn text<'v>(pod: &'v Value, pointer: &str) -> &'v str {
    pod.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The entries of the pod's `kind` (`podAffinity` or `podAntiAffinity`) list `when`
/// (`required…` or `preferred…DuringSchedulingIgnoredDuringExecution`).
fn term_entries<'a>(pod: &'a Value, kind: &str, when: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!(
        "/spec/affinity/{kind}/{when}DuringSchedulingIgnoredDuringExecution"
    ))
    .and_then(Value::as_array)
    .into_iter()
    .flatten()
}

/// The pod's required terms of `kind` (`podAffinity` or `podAntiAffinity`).
fn required_terms(pod: &Value, kind: &str) -> Vec<Term> {
    let own = text(pod, "/metadata/namespace");
    term_entries(pod, kind, "required")
        .map(|t| Term::parse(t, own))
        .collect()
}

/// The pod's preferred terms of `kind`, with their weights.
fn preferred_terms(pod: &Value, kind: &str) -> Vec<(i64, Term)> {
    let own = text(pod, "/metadata/namespace");
    term_entries(pod, kind, "preferred")
        .filter_map(|w| {
            let weight = w.get("weight").and_then(Value::as_i64)?;
            Some((weight, Term::parse(w.get("podAffinityTerm")?, own)))
        })
        .collect()
}

/// A pending pod's required inter-pod terms, counted once against the pods already on
/// the nodes, then checked node by node.
pub(super) struct Required {
    affinity: Vec<Term>,
    anti_affinity: Vec<Term>,
    /// Domains holding a pod that matches every affinity term.
    affinity_counts: Counts,
    /// Domains holding a pod that matches an anti-affinity term.
    anti_affinity_counts: Counts,
    /// Domains holding a pod whose own anti-affinity selects the pending pod.
    existing_counts: Counts,
    /// The pod matches its own affinity terms (it may start a group that packs).
    matches_itself: bool,
}

impl Required {
    /// Counts `pod`'s required terms against the pods on `nodes`.
    pub fn of(pod: &Value, nodes: &[NodeState], namespaces: &NamespaceLabels) -> Required {
        let affinity = required_terms(pod, "podAffinity");
        let anti_affinity = required_terms(pod, "podAntiAffinity");
        let mut affinity_counts = Counts::new();
        let mut anti_affinity_counts = Counts::new();
        let mut existing_counts = Counts::new();
        for node in nodes {
            for other in &node.pods {
                if !affinity.is_empty() && affinity.iter().all(|t| t.selects(other, namespaces)) {
                    for term in &affinity {
                        if let Some(domain) = term.domain(node) {
                            *affinity_counts.entry(domain).or_default() += 1;
                        }
                    }
                }
                for term in anti_affinity
                    .iter()
                    .filter(|t| t.selects(other, namespaces))
                {
                    if let Some(domain) = term.domain(node) {
                        *anti_affinity_counts.entry(domain).or_default() += 1;
                    }
                }
                for term in required_terms(other, "podAntiAffinity") {
                    if term.selects(pod, namespaces)
                        && let Some(domain) = term.domain(node)
                    {
                        *existing_counts.entry(domain).or_default() += 1;
                    }
                }
            }
        }
        let matches_itself = affinity.iter().all(|t| t.selects(pod, namespaces));
        Required {
            affinity,
            anti_affinity,
            affinity_counts,
            anti_affinity_counts,
            existing_counts,
            matches_itself,
        }
    }

    /// Why `node` does not satisfy the terms, checked in the real plugin's order.
    pub fn refusal(&self, node: &NodeState) -> Option<Refusal> {
        if !self.affinity_met(node) {
            return Some(Refusal::Affinity);
        }
        let held = |counts: &Counts, domain: Option<(String, String)>| {
            domain.is_some_and(|d| counts.get(&d).is_some_and(|n| *n > 0))
        };
        if self
            .anti_affinity
            .iter()
            .any(|t| held(&self.anti_affinity_counts, t.domain(node)))
        {
            return Some(Refusal::AntiAffinity);
        }
        if self
            .existing_counts
            .iter()
            .any(|((key, value), n)| *n > 0 && node.label(key) == Some(value.as_str()))
        {
            return Some(Refusal::ExistingAntiAffinity);
        }
        None
    }

    fn affinity_met(&self, node: &NodeState) -> bool {
        let mut pods_there = true;
        for term in &self.affinity {
            // Every topology label must exist on the node.
            let Some(domain) = term.domain(node) else {
                return false;
            };
            if self.affinity_counts.get(&domain).is_none_or(|n| *n == 0) {
                pods_there = false;
            }
        }
        pods_there || (self.affinity_counts.is_empty() && self.matches_itself)
    }
}

/// How much `pod`'s preferred terms like `node`: the weights of the terms matched by the
/// pods in the node's domain, affinity adding and anti-affinity subtracting, per pod.
pub(super) fn preference(
    pod: &Value,
    node: &NodeState,
    nodes: &[NodeState],
    namespaces: &NamespaceLabels,
) -> i64 {
    let mut score = 0;
    for (sign, kind) in [(1, "podAffinity"), (-1, "podAntiAffinity")] {
        for (weight, term) in preferred_terms(pod, kind) {
            let Some(here) = term.domain(node) else {
                continue;
            };
            for other_node in nodes
                .iter()
                .filter(|n| term.domain(n).as_ref() == Some(&here))
            {
                let matching = other_node
                    .pods
                    .iter()
                    .filter(|p| term.selects(p, namespaces))
                    .count();
                let matching = i64::try_from(matching).unwrap_or(i64::MAX);
                score = weight
                    .saturating_mul(matching)
                    .saturating_mul(sign)
                    .saturating_add(score);
            }
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::NodeConfig;
    use crate::network::{Network, PodNetwork};

    fn pod(namespace: &str, labels: Value, affinity: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": namespace, "labels": labels},
            "spec": {"affinity": affinity},
        })
    }

    fn required(kind: &str, term: Value) -> Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    }

    fn zoned(name: &str, zone: Option<&str>) -> NodeConfig {
        let node = NodeConfig::new(name);
        match zone {
            Some(zone) => node.label("zone", zone),
            None => node,
        }
    }

    #[test]
    fn a_topology_domain_spans_every_node_with_the_same_label_value() {
        let configs = [
            zoned("a1", Some("a")),
            zoned("a2", Some("a")),
            zoned("b1", Some("b")),
            zoned("none", None),
        ];
        let network = Network::create(PodNetwork::SharedLoopback, [0, 230], configs.len())
            .expect("loopback blocks");
        let mut nodes: Vec<NodeState> = configs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some(NodeState::new(c, network.node(i)?)))
            .collect();
        nodes[0].hold(Arc::new(pod("ns", json!({"app": "db"}), json!(null))));
        let term = json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"});
        let none = NamespaceLabels::new();

        let near = pod("ns", json!({}), required("podAffinity", term.clone()));
        let near = Required::of(&near, &nodes, &none);
        let refusals: Vec<Option<Refusal>> = nodes.iter().map(|n| near.refusal(n)).collect();
        // a2 shares a1's zone; a node without the topology label never satisfies affinity.
        assert_eq!(
            refusals,
            [None, None, Some(Refusal::Affinity), Some(Refusal::Affinity)]
        );

        let far = pod("ns", json!({}), required("podAntiAffinity", term.clone()));
        let far = Required::of(&far, &nodes, &none);
        let refusals: Vec<Option<Refusal>> = nodes.iter().map(|n| far.refusal(n)).collect();
        assert_eq!(
            refusals,
            [
                Some(Refusal::AntiAffinity),
                Some(Refusal::AntiAffinity),
                None,
                None
            ]
        );

        // The term defaults to the pod's own namespace; a selector of `{}` takes them all.
        let elsewhere = pod("other", json!({}), required("podAffinity", term.clone()));
        assert_eq!(
            Required::of(&elsewhere, &nodes, &none).refusal(&nodes[0]),
            Some(Refusal::Affinity)
        );
        let mut every_namespace = term;
        every_namespace["namespaceSelector"] = json!({});
        let elsewhere = pod("other", json!({}), required("podAffinity", every_namespace));
        assert_eq!(
            Required::of(&elsewhere, &nodes, &none).refusal(&nodes[0]),
            None
        );
    }

    #[test]
    fn preferred_terms_weigh_each_matching_pod_in_the_domain() {
        let configs = [NodeConfig::new("one"), NodeConfig::new("two")];
        let network =
            Network::create(PodNetwork::SharedLoopback, [0, 240], 2).expect("loopback blocks");
        let mut nodes: Vec<NodeState> = configs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some(NodeState::new(c, network.node(i)?)))
            .collect();
        for _ in 0..2 {
            nodes[0].hold(Arc::new(pod("ns", json!({"g": "x"}), json!(null))));
        }
        let term = json!({
            "labelSelector": {"matchLabels": {"g": "x"}},
            "topologyKey": "kubernetes.io/hostname",
        });
        let affinity = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": term}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 3, "podAffinityTerm": term}]},
        });
        let incoming = pod("ns", json!({}), affinity);
        let none = NamespaceLabels::new();
        assert_eq!(
            preference(&incoming, &nodes[0], &nodes, &none),
            2 * (10 - 3)
        );
        assert_eq!(preference(&incoming, &nodes[1], &nodes, &none), 0);
    }
}
