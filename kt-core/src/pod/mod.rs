//! What only a pod can honour: the container image and command, scheduling (node
//! selector, tolerations, priority, Kueue queue), the service account, volumes and raw pod
//! patches — the [`PodOptions`] inside a [`crate::Compute`] — and the Kubernetes name
//! rules they are checked against.
//!
//! The types stay backend-neutral (no Kubernetes types here): the Kubernetes backend
//! turns them into a pod spec; a backend without pods rejects a spawn that sets any of
//! them ([`PodOptions::settings`] names them), rather than ignore it.

pub(crate) mod names;
mod patch;
mod toleration;
mod volume;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use patch::PodPatch;
pub use toleration::{TaintEffect, Toleration, TolerationOperator};
pub use volume::{Volume, VolumeSource};

use names::{is_dns_label, is_dns_subdomain, is_label_value, is_qualified_name};

/// The pod-level part of a [`crate::Compute`], set through its builder methods
/// (`.image(..)`, `.toleration(..)`, `.volume(..)`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodOptions {
    /// Container image (the backend's default image otherwise).
    pub image: Option<String>,
    /// Node labels the actor must be placed on.
    pub node_selector: BTreeMap<String, String>,
    /// Node taints the actor tolerates.
    pub tolerations: Vec<Toleration>,
    /// The scheduling priority class (Kubernetes `priorityClassName`).
    pub priority_class: Option<String>,
    /// The identity the actor's pod runs as (Kubernetes `serviceAccountName`).
    pub service_account: Option<String>,
    /// Volumes mounted into the actor's container.
    pub volumes: Vec<Volume>,
    /// The Kueue local queue that admits the actor (label `kueue.x-k8s.io/queue-name`).
    pub queue: Option<String>,
    /// Replaces the command that starts the user's binary in the container (the
    /// backend's default is the binary's path in the image).
    pub command: Option<Vec<String>>,
    /// Arguments given to the command.
    pub args: Option<Vec<String>>,
    /// Raw patches to the pod template, applied last, in order (the escape hatch).
    pub pod_patches: Vec<PodPatch>,
}

impl PodOptions {
    /// The options set here, by the names of the `Compute` setters that set them.
    pub fn settings(&self) -> Vec<&'static str> {
        let set = [
            ("image", self.image.is_some()),
            ("node_selector", !self.node_selector.is_empty()),
            ("toleration", !self.tolerations.is_empty()),
            ("priority_class", self.priority_class.is_some()),
            ("service_account", self.service_account.is_some()),
            ("volume", !self.volumes.is_empty()),
            ("queue", self.queue.is_some()),
            ("command", self.command.is_some()),
            ("args", self.args.is_some()),
            ("pod_patch", !self.pod_patches.is_empty()),
        ];
        set.into_iter()
            .filter_map(|(name, is_set)| is_set.then_some(name))
            .collect()
    }

    /// What is wrong with the options, each problem with the value that causes it.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in &self.node_selector {
            if !is_qualified_name(key) || !is_label_value(value) {
                problems.push(format!(
                    "node selector '{key}={value}' is not a valid node label; keys look like \
                     \"cloud.google.com/gke-accelerator\", values are at most 63 letters, \
                     digits, '-', '_' or '.'"
                ));
            }
        }
        problems.extend(self.tolerations.iter().filter_map(Toleration::problem));
        let names = [
            ("priority class", &self.priority_class),
            ("service account", &self.service_account),
        ];
        for (what, name) in names {
            if let Some(name) = name.as_deref().filter(|n| !is_dns_subdomain(n)) {
                problems.push(format!(
                    "{what} '{name}' is not a valid name (lowercase letters, digits, '-' and \
                     '.', at most 253)"
                ));
            }
        }
        if let Some(queue) = self.queue.as_deref().filter(|q| !is_dns_label(q)) {
            problems.push(format!(
                "queue '{queue}' is not a valid Kueue local queue name (lowercase letters, \
                 digits and '-', at most 63)"
            ));
        }
        problems.extend(self.volumes.iter().filter_map(Volume::problem));
        for (i, volume) in self.volumes.iter().enumerate() {
            let earlier = &self.volumes[..i];
            if earlier.iter().any(|v| v.name == volume.name) {
                problems.push(format!("two volumes are named '{}'", volume.name));
            }
            if earlier.iter().any(|v| v.mount_path == volume.mount_path) {
                problems.push(format!(
                    "two volumes are mounted at '{}'; give each its own path",
                    volume.mount_path
                ));
            }
        }
        if let Some(command) = &self.command
            && command.first().is_none_or(|c| c.trim().is_empty())
        {
            problems.push(
                "command is empty; give the program to run first, e.g. \
                 `.command([\"/app/bin/trainer\"])`"
                    .to_string(),
            );
        }
        problems.extend(self.pod_patches.iter().filter_map(PodPatch::problem));
        problems
    }
}
