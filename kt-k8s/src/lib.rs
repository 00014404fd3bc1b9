//! # kt-k8s: actors as Kubernetes pods
//!
//! This crate will place kt actors on Kubernetes: `kt_core::Compute` becomes a pod spec
//! (resources, GPUs, node selectors, tolerations, an escape-hatch patch), groups become
//! ranked pods with a headless Service, pod failures become typed `ActorDied` causes, and
//! an API-server emulator lets all of it be tested through the real `kube` client without
//! a cluster.
//!
//! It has no public items yet; see the Kubernetes issue.
//!
//! ```
//! // What this crate will turn into pods:
//! let gpu = kt_core::Compute::new().cpus(8.0).gpus(1).memory("64Gi").image("ghcr.io/team/rl:latest");
//! assert!(gpu.validate().is_ok());
//! ```
