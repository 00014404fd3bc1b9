//! [`Compute`]: what an actor needs to run — CPUs, GPUs, memory, extended resources and
//! environment — and, in its [`PodOptions`], what only a pod honours (image, command,
//! node selection, tolerations, priority, service account, volumes, a Kueue queue, raw
//! pod patches).
//!
//! The in-process backend ignores resources (there is nothing to reserve); the
//! local-process backend counts CPUs and GPUs and refuses pod options; the Kubernetes
//! backend turns all of it into a pod spec. The types stay backend-neutral (no Kubernetes
//! types here) so that every backend reads the same request. Invalid values (a memory quantity that does not parse, a negative
//! CPU count) are collected by the builder and reported by [`Compute::validate`], which
//! every spawn calls, so the builder itself stays chainable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pod::names::is_qualified_name;
use crate::pod::{PodOptions, PodPatch, Toleration, Volume};
use crate::quantity::parse_quantity;

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
    /// Environment variables for the actor's process.
    pub env: BTreeMap<String, String>,
    /// What only a pod honours: image, scheduling, volumes, command, pod patches.
    pub pod: PodOptions,
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
        self.pod.image = Some(image.into());
        self
    }

    /// Sets an environment variable for the actor's process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Restricts placement to nodes with this label.
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.pod.node_selector.insert(key.into(), value.into());
        self
    }

    /// Tolerates the node taints `toleration` matches (a GPU pool's taint, typically).
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.pod.tolerations.push(toleration);
        self
    }

    /// Schedules the actor with this priority class (it must exist in the cluster).
    pub fn priority_class(mut self, name: impl Into<String>) -> Self {
        self.pod.priority_class = Some(name.into());
        self
    }

    /// Runs the actor's pod as this service account (it must exist in the namespace);
    /// without one, the pod gets no API token at all.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.pod.service_account = Some(name.into());
        self
    }

    /// Mounts `volume` into the actor's container.
    pub fn volume(mut self, volume: Volume) -> Self {
        self.pod.volumes.push(volume);
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
        self.pod.queue = Some(name.into());
        self
    }

    /// Starts the binary with this command instead of the backend's default (for an image
    /// whose binary is not where the backend expects it, or that needs a wrapper).
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pod.command = Some(command.into_iter().map(Into::into).collect());
        self
    }

    /// Passes these arguments to the command.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pod.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Applies a JSON merge patch (RFC 7386) to the actor's pod template, after everything
    /// kt sets: `json!({"spec": {"securityContext": {"runAsNonRoot": true}}})`. Lists are
    /// replaced whole; to append to one, use [`Compute::pod_json_patch`]. See [`PodPatch`].
    pub fn pod_patch(mut self, patch: serde_json::Value) -> Self {
        self.pod.pod_patches.push(PodPatch::Merge(patch));
        self
    }

    /// Applies a JSON patch (RFC 6902) to the actor's pod template, after everything kt
    /// sets: `json!([{"op": "add", "path": "/spec/containers/-", "value": {...}}])`
    /// adds a sidecar. See [`PodPatch`].
    pub fn pod_json_patch(mut self, patch: serde_json::Value) -> Self {
        self.pod.pod_patches.push(PodPatch::Json(patch));
        self
    }

    /// The knobs set here that only a pod can honour (the [`PodOptions`], and extended
    /// resources), by their setters' names: a placement without pods rejects a spawn that
    /// sets any of them rather than ignore it.
    pub fn pod_only_settings(&self) -> Vec<&'static str> {
        let resources = (!self.resources.is_empty()).then_some("resource");
        resources.into_iter().chain(self.pod.settings()).collect()
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
        problems.extend(self.pod.problems());
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaintEffect, VolumeSource};
    use serde_json::json;

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
        assert_eq!(gpu.pod.tolerations.len(), 1);
        assert_eq!(gpu.pod.priority_class.as_deref(), Some("high-priority"));
        assert_eq!(gpu.pod.service_account.as_deref(), Some("trainer"));
        assert_eq!(gpu.pod.volumes[0].mount_path, "/dev/shm");
        assert_eq!(
            gpu.pod.volumes[0].source,
            VolumeSource::EmptyDir {
                in_memory: true,
                size_limit: Some("16Gi".into())
            }
        );
        assert!(gpu.pod.volumes[1].read_only);
        assert_eq!(gpu.pod.queue.as_deref(), Some("team-a"));
        assert_eq!(gpu.pod.command, Some(vec!["/app/trainer".to_string()]));
        assert_eq!(gpu.pod.args, Some(vec!["--verbose".to_string()]));
        assert!(matches!(
            gpu.pod.pod_patches[..],
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
