//! [`Compute`]: what an actor needs to run — CPUs, GPUs, memory, extended resources,
//! and for container backends the image, command, environment, node selection,
//! tolerations, priority, service account, volumes, a Kueue queue and a raw pod patch.
//!
//! The in-process backend ignores resources (there is nothing to reserve); the
//! local-process backend counts CPUs and GPUs; the Kubernetes backend turns all of it
//! into a pod spec. The types stay backend-neutral (no Kubernetes types here) so that
//! every backend reads the same request. Invalid values (a memory quantity that does not parse, a negative
//! CPU count) are collected by the builder and reported by [`Compute::validate`], which
//! every spawn calls, so the builder itself stays chainable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names_k8s::{is_dns_label, is_dns_subdomain, is_label_value, is_qualified_name};
use crate::pod_patch::PodPatch;
use crate::toleration::Toleration;
use crate::volume::Volume;

/// Resources and runtime environment requested for one actor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// CPUs (fractions allowed, as Kubernetes' `cpu`).
    pub cpus: Option<f64>,
    /// Whole GPUs.
    pub gpus: u32,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Extended resources by name (`example.com/fpga` → 2).
    pub resources: BTreeMap<String, u64>,
    /// Container image (container backends only).
    pub image: Option<String>,
    /// Environment variables for the actor's process.
    pub env: BTreeMap<String, String>,
    /// Node labels the actor must be placed on (container backends only).
    pub node_selector: BTreeMap<String, String>,
    /// Node taints the actor tolerates (container backends only).
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
    problems: Vec<String>,
}

impl Compute {
    /// An empty request: no reserved resources, the backend's defaults for the rest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests `cpus` CPUs (for example `0.5` or `8`).
    pub fn cpus(mut self, cpus: f64) -> Self {
        if cpus.is_finite() && cpus > 0.0 {
            self.cpus = Some(cpus);
        } else {
            self.problems
                .push(format!("cpus must be a positive number, got {cpus}"));
        }
        self
    }

    /// Requests `gpus` whole GPUs.
    pub fn gpus(mut self, gpus: u32) -> Self {
        self.gpus = gpus;
        self
    }

    /// Requests memory as a Kubernetes quantity: `"64Gi"`, `"512Mi"`, `"1G"`, `"1000"`.
    pub fn memory(mut self, quantity: &str) -> Self {
        match parse_quantity(quantity) {
            Ok(bytes) => self.memory_bytes = Some(bytes),
            Err(problem) => self.problems.push(problem),
        }
        self
    }

    /// Requests `amount` of an extended resource.
    pub fn resource(mut self, name: impl Into<String>, amount: u64) -> Self {
        self.resources.insert(name.into(), amount);
        self
    }

    /// Runs the actor in this container image.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets an environment variable for the actor's process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Restricts placement to nodes with this label.
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Tolerates the node taints `toleration` matches (a GPU pool's taint, typically).
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.tolerations.push(toleration);
        self
    }

    /// Schedules the actor with this priority class (it must exist in the cluster).
    pub fn priority_class(mut self, name: impl Into<String>) -> Self {
        self.priority_class = Some(name.into());
        self
    }

    /// Runs the actor's pod as this service account (it must exist in the namespace);
    /// without one, the pod gets no API token at all.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Mounts `volume` into the actor's container.
    pub fn volume(mut self, volume: Volume) -> Self {
        self.volumes.push(volume);
        self
    }

    /// Gives the actor an in-memory `/dev/shm` of up to `size` (`"16Gi"`), which NCCL and
    /// PyTorch data loaders need well beyond a container's 64 MiB default. It counts
    /// against the actor's memory.
    pub fn shared_memory(self, size: &str) -> Self {
        self.volume(Volume::memory("dshm", "/dev/shm").size_limit(size))
    }

    /// Submits the actor through this Kueue local queue (Kueue admits it when quota allows).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// Starts the binary with this command instead of the backend's default (for an image
    /// whose binary is not where the backend expects it, or that needs a wrapper).
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Passes these arguments to the command.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Applies a JSON merge patch (RFC 7386) to the actor's pod template, after everything
    /// kt sets: `json!({"spec": {"securityContext": {"runAsNonRoot": true}}})`. Lists are
    /// replaced whole; to append to one, use [`Compute::pod_json_patch`]. See [`PodPatch`].
    pub fn pod_patch(mut self, patch: serde_json::Value) -> Self {
        self.pod_patches.push(PodPatch::Merge(patch));
        self
    }

    /// Applies a JSON patch (RFC 6902) to the actor's pod template, after everything kt
    /// sets: `json!([{"op": "add", "path": "/spec/containers/-", "value": {...}}])`
    /// adds a sidecar. See [`PodPatch`].
    pub fn pod_json_patch(mut self, patch: serde_json::Value) -> Self {
        self.pod_patches.push(PodPatch::Json(patch));
        self
    }

    /// The knobs set here that only a pod can honour (the image, scheduling, volumes, the
    /// container's command, pod patches, extended resources), by their setters' names: a
    /// placement without pods rejects a spawn that sets any of them rather than ignore it.
    pub fn pod_only_settings(&self) -> Vec<&'static str> {
        let set = [
            ("image", self.image.is_some()),
            ("resource", !self.resources.is_empty()),
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

    /// Fails with every problem the builder met or the fields have, or returns `Ok`.
    pub fn validate(&self) -> Result<()> {
        let mut problems = self.problems.clone();
        problems.extend(self.field_problems());
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidOptions {
            problems: problems
                .into_iter()
                .map(|p| format!("compute: {p}"))
                .collect(),
        })
    }

    /// Checks the fields themselves (they are public, so the builder alone cannot).
    fn field_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for name in self.resources.keys() {
            if !is_qualified_name(name) {
                problems.push(format!(
                    "resource '{name}' is not a valid resource name; write it like \
                     \"example.com/fpga\""
                ));
            }
        }
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

/// Parses a Kubernetes quantity (memory, storage) into bytes.
pub(crate) fn parse_quantity(quantity: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!(
            "memory quantity '{quantity}' is not valid; write a number with an optional unit, \
             like \"64Gi\", \"512Mi\" or \"1G\""
        )
    };
    let trimmed = quantity.trim();
    // kube_quantity reads a bare unit ("Gi") as zero; Kubernetes wants a number first.
    // (It also reads "E"/"Ei" as the start of an exponent, so exabyte quantities are
    // refused; no actor asks for one.)
    if !trimmed.contains(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let parsed = kube_quantity::ParsedQuantity::try_from(trimmed).map_err(|_| bad())?;
    // Through f64 rather than `to_bytes_u64`, which truncates the number before scaling
    // ("1.5Gi" would come out as 1Gi) and refuses sub-unit scales ("500m").
    let bytes = parsed.to_bytes_f64().ok_or_else(bad)?;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaintEffect, VolumeSource};
    use serde_json::json;

    #[test]
    fn memory_quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("64Gi"), Ok(64 << 30));
        assert_eq!(parse_quantity("512Mi"), Ok(512 << 20));
        assert_eq!(parse_quantity("1G"), Ok(1_000_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_quantity("1000"), Ok(1000));
        assert_eq!(parse_quantity("1e3"), Ok(1000));
        assert_eq!(parse_quantity(" 2Ki "), Ok(2048));
        assert_eq!(parse_quantity("2Pi"), Ok(2 << 50));
        assert_eq!(parse_quantity("1Ti"), Ok(1 << 40));
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("Gi").is_err());
        assert!(parse_quantity("1Qi").is_err());
        assert!(parse_quantity("64 gigs").is_err());
        assert!(parse_quantity("20000000000000000000").is_err());
        assert!(parse_quantity("-1Gi").is_err());
        assert!(parse_quantity("").is_err());
    }

    #[test]
    fn builder_problems_surface_at_validation() {
        let ok = Compute::new()
            .cpus(8.0)
            .gpus(1)
            .memory("64Gi")
            .image("img")
            .env("A", "1");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.memory_bytes, Some(64 << 30));
        let bad = Compute::new().cpus(-1.0).memory("64 gigs");
        let err = bad.validate().expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("cpus must be a positive number"), "{text}");
        assert!(text.contains("'64 gigs' is not valid"), "{text}");
    }

    #[test]
    fn pod_only_settings_name_what_only_a_pod_honours() {
        assert!(
            Compute::new()
                .cpus(2.0)
                .gpus(1)
                .memory("1Gi")
                .env("A", "1")
                .pod_only_settings()
                .is_empty()
        );
        let podded = Compute::new()
            .image("x:1")
            .toleration(Toleration::exists("gpu"))
            .shared_memory("1Gi");
        assert_eq!(
            podded.pod_only_settings(),
            ["image", "toleration", "volume"]
        );
    }

    fn problems_of(compute: Compute) -> String {
        match compute.validate() {
            Err(Error::InvalidOptions { problems }) => problems.join("; "),
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }

    #[test]
    fn pod_level_knobs_are_recorded() {
        let gpu = Compute::new()
            .gpus(1)
            .toleration(Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule))
            .priority_class("high-priority")
            .service_account("trainer")
            .shared_memory("16Gi")
            .volume(Volume::pvc("data", "imagenet", "/data").read_only())
            .queue("team-a")
            .command(["/app/trainer"])
            .args(["--verbose"])
            .pod_patch(json!({"spec": {"runtimeClassName": "nvidia"}}))
            .pod_json_patch(json!([{"op": "add", "path": "/spec/hostIPC", "value": true}]));
        assert_eq!(gpu.validate(), Ok(()));
        assert_eq!(gpu.tolerations.len(), 1);
        assert_eq!(gpu.priority_class.as_deref(), Some("high-priority"));
        assert_eq!(gpu.service_account.as_deref(), Some("trainer"));
        assert_eq!(gpu.volumes[0].mount_path, "/dev/shm");
        assert_eq!(
            gpu.volumes[0].source,
            VolumeSource::EmptyDir {
                in_memory: true,
                size_limit: Some("16Gi".into())
            }
        );
        assert!(gpu.volumes[1].read_only);
        assert_eq!(gpu.queue.as_deref(), Some("team-a"));
        assert_eq!(gpu.command, Some(vec!["/app/trainer".to_string()]));
        assert_eq!(gpu.args, Some(vec!["--verbose".to_string()]));
        assert!(matches!(
            gpu.pod_patches[..],
            [PodPatch::Merge(_), PodPatch::Json(_)]
        ));
    }

    #[test]
    fn pod_level_problems_are_all_reported() {
        let text = problems_of(
            Compute::new()
                .toleration(Toleration::equal("", "x"))
                .priority_class("High Priority")
                .service_account("Bad_SA")
                .queue("team a")
                .volume(Volume::empty_dir("scratch", "/scratch"))
                .volume(Volume::empty_dir("scratch", "/scratch"))
                .command(Vec::<String>::new())
                .pod_patch(json!("not an object"))
                .resource("bad resource", 1)
                .node_selector("pool", "has space"),
        );
        for expected in [
            "`Equal` needs a key",
            "priority class 'High Priority' is not a valid name",
            "service account 'Bad_SA'",
            "queue 'team a'",
            "two volumes are named 'scratch'",
            "two volumes are mounted at '/scratch'",
            "command is empty",
            "a merge patch must be a JSON object",
            "resource 'bad resource'",
            "node selector 'pool=has space'",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
    }

    #[test]
    fn compute_with_pod_knobs_survives_the_wire() {
        let compute = Compute::new()
            .toleration(Toleration::everything())
            .shared_memory("1Gi")
            .pod_patch(json!({"metadata": {"labels": {"team": "rl"}}, "spec": {"x": [1, 2.5]}}));
        let bytes = crate::codec::encode(&compute, "compute").expect("encodes");
        let back: Compute = crate::codec::decode(&bytes, "compute").expect("decodes");
        assert_eq!(back, compute);
    }
}
