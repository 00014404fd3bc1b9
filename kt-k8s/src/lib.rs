//! # kt-k8s: actors as Kubernetes pods
//!
//! This crate places kt actors on Kubernetes: [`Kubernetes`] (the [`placement`]) runs each
//! actor in a pod, watches it and reports its end with Kubernetes' own reason. Underneath
//! is the [`manifest`] layer: pure functions that turn a spawn request — the actor's type
//! and name, its [`kt_core::Compute`], its group rank and placement group, its owner —
//! into the Kubernetes objects the placement creates, built with k8s-openapi types and
//! validated in CI against the official schemas.
//!
//! Pods after an actor's end: `kill()` deletes its pod and worker Secret (retrying failed
//! deletes; one that still fails is logged and the pod stays visible to lookups). An actor
//! that *failed* — OOM-killed, evicted, exited or killed by a signal, its container unable
//! to start, a panic past `max_restarts` — keeps its pod for inspection (`kt ps`,
//! `kt logs`, `kubectl describe`) until its session ends ([`Kubernetes::shutdown`] or
//! `kt down`); its Secret goes at once, and a detached actor's failed pod is handed to the
//! session root so that it goes with the session. A new actor of the same name in the
//! same session replaces the kept pod. Pods that ended cleanly (the last handle dropped,
//! `Context::stop`), that are being deleted anyway, or that could still start
//! (unschedulable, image pull failures, a `restartPolicy` other than `Never`) are deleted.
//!
//! | `Compute` knob | becomes |
//! |---|---|
//! | `cpus`, `memory`, `gpus`, `resource` | container requests/limits (`nvidia.com/gpu` for GPUs) |
//! | `image`, `command`, `args`, `env` | the actor's container |
//! | `node_selector`, `toleration`, `priority_class` | pod scheduling fields |
//! | `service_account` | `serviceAccountName` (otherwise no API token is mounted) |
//! | `volume`, `shared_memory` | pod volumes and container mounts |
//! | `queue` | Kueue's `kueue.x-k8s.io/queue-name` label |
//! | `pod_patch`, `pod_json_patch` | RFC 7386 / RFC 6902 patches, applied last |
//!
//! Groups become ranked pods with torchrun's environment behind a headless Service;
//! placement groups become pod affinity or anti-affinity; each owned object points at one
//! session root, so deleting it garbage-collects the session. The [`cli`] module is the
//! `kt` command (`ps`, `logs`, `kill`, `down`, `manifest`) on top of the same contract.
//!
//! ```
//! use kt_core::{Compute, TaintEffect, Toleration};
//! use kt_k8s::manifest::{ActorPod, Owner, SessionId, actor_pod};
//!
//! let gpu = Compute::new()
//!     .cpus(8.0)
//!     .gpus(1)
//!     .memory("64Gi")
//!     .image("ghcr.io/team/rl:latest")
//!     .toleration(Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule))
//!     .shared_memory("16Gi");
//! let plan = ActorPod {
//!     session: SessionId::new("a1b2c3")?,
//!     namespace: "ml".into(),
//!     actor_name: "learner".into(),
//!     type_name: "rl::Learner".into(),
//!     image: "ghcr.io/team/app:latest".into(),
//!     command: vec!["/app/bin/train".into()],
//!     compute: gpu,
//!     port: kt_k8s::placement::DEFAULT_PORT,
//!     group: None,
//!     placement: None,
//!     owner: Owner::Detached,
//! };
//! let pod = actor_pod(&plan)?;
//! let container = &pod.spec.as_ref().expect("a pod has a spec").containers[0];
//! let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
//! assert_eq!(limits.map(|l| l["nvidia.com/gpu"].0.as_str()), Some("1"));
//! assert_eq!(container.image.as_deref(), Some("ghcr.io/team/rl:latest"));
//! # Ok::<(), kt_core::Error>(())
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod manifest;
pub mod placement;

pub use placement::{Kubernetes, KubernetesBuilder, Reach, SpawnTiming};
