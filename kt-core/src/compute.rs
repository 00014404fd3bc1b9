//! [`Compute`]: what an actor needs to run — CPUs, GPUs, memory, extended resources,
//! and for container backends the image, environment and node selection.
//!
//! The in-process backend ignores resources (there is nothing to reserve); the
//! local-process backend counts CPUs and GPUs; the Kubernetes backend turns all of it
//! into a pod spec. Invalid values (a memory quantity that does not parse, a negative
//! CPU count) are collected by the builder and reported by [`Compute::validate`], which
//! every spawn calls, so the builder itself stays chainable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
        match parse_memory(quantity) {
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

    /// Fails with every problem the builder met, or returns `Ok`.
    pub fn validate(&self) -> Result<()> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidOptions {
            message: format!("compute: {}", self.problems.join("; ")),
        })
    }
}

/// Parses a Kubernetes memory quantity into bytes.
fn parse_memory(quantity: &str) -> std::result::Result<u64, String> {
    const UNITS: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let bad = || {
        format!(
            "memory quantity '{quantity}' is not valid; write a number with an optional unit, \
             like \"64Gi\", \"512Mi\" or \"1G\""
        )
    };
    let trimmed = quantity.trim();
    let (digits, multiplier) = UNITS
        .iter()
        .find_map(|(unit, mult)| trimmed.strip_suffix(unit).map(|d| (d, *mult)))
        .unwrap_or((trimmed, 1));
    let value: f64 = digits.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_parse_like_kubernetes() {
        assert_eq!(parse_memory("64Gi"), Ok(64 << 30));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory("1000"), Ok(1000));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1Gi").is_err());
        assert!(parse_memory("").is_err());
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
}
