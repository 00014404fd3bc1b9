//! The scheduler's view of each node during one pass: what is left of its allocatable
//! resources, and which pods it holds (for inter-pod affinity).

use std::sync::Arc;

use serde_json::{Value, json};

use super::requests::{Amounts, amounts, requests};
use crate::config::NodeConfig;
use crate::network::NodeNetwork;

/// One node as the scheduler sees it during a pass.
pub(super) struct NodeState<'a> {
    pub config: &'a NodeConfig,
    pub network: &'a NodeNetwork,
    /// The node's labels as JSON, for node selectors and node affinity.
    pub labels: Value,
    /// Allocatable less what the node's pods request.
    pub free: Amounts,
    /// Pods bound to the node that still hold it (not finished), this pass's included.
    pub pods: Vec<Arc<Value>>,
}

impl<'a> NodeState<'a> {
    /// An empty node.
    pub fn new(config: &'a NodeConfig, network: &'a NodeNetwork) -> Self {
        NodeState {
            config,
            network,
            labels: json!(config.labels),
            free: amounts(&config.allocatable),
            pods: Vec::new(),
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The value of one of the node's labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config.labels.get(key).map(String::as_str)
    }

    /// `pod` is on this node: it holds its requests and counts for affinity.
    pub fn hold(&mut self, pod: Arc<Value>) {
        for (k, v) in requests(&pod) {
            *self.free.entry(k).or_default() -= v;
        }
        self.pods.push(pod);
    }
}
