//! Kubernetes objects for kt's spawn requests: pure functions from a plan ([`ActorPod`])
//! to k8s-openapi objects, no I/O. The placement creates what these return; `kt
//! manifest` prints it with [`to_yaml`]; CI validates every shape against the official
//! schemas (`.ci/run`, `examples/write_manifests.rs`).
//!
//! | builder | object | what it is for |
//! |---|---|---|
//! | [`session_root`] | ConfigMap `kt-session-<id>` | owner of the session's owned objects |
//! | [`actor_pod`] | Pod `kt-<session>-<actor>` | one actor: the user's binary in worker mode |
//! | [`worker_secret`] | Secret `<pod>-worker` | the worker's TLS identity and config |
//! | [`group_service`] | Service `kt-<session>-g-<group>` | headless; stable DNS names for ranks |
//! | [`group_manifests`] | Service + N pods | a whole group from one template |
//!
//! # The contract
//!
//! Labels (kt selects and watches by the `kt.dev/` ones):
//!
//! | key | value |
//! |---|---|
//! | `app.kubernetes.io/managed-by` | `kt` |
//! | `app.kubernetes.io/component` | `actor`, `actor-group` (Service) or `session` (root) |
//! | `app.kubernetes.io/name` | the actor's short type name (`Trainer`) |
//! | `app.kubernetes.io/instance`, `kt.dev/actor` | the actor's name |
//! | `kt.dev/session` | the session id |
//! | `kt.dev/group`, `kt.dev/rank` | a group member's group and rank |
//! | `kt.dev/placement-group` | the placement group |
//! | `kueue.x-k8s.io/queue-name` | `Compute::queue`; group members also get Kueue's pod-group label |
//!
//! Label values are sanitized (see [`label_value`]): changed or truncated values end in
//! 8 hex digits of the original's SHA-256. Annotations keep what labels cannot hold
//! verbatim: `kt.dev/actor-name`, `kt.dev/type-name`, `kt.dev/lifetime` (`owned` or
//! `detached`) and, on group members, `kt.dev/world-size`.
//!
//! Environment of the actor's container: `KT_WORKER=1` (worker mode), `KT_WORKER_DIR=/var/run/kt`
//! (where the worker Secret is mounted read-only, mode 0400: `ca.pem`, `tls.crt`, `tls.key`,
//! `worker.msgpack` — key material is never in the environment), `POD_NAME`,
//! `POD_NAMESPACE`, `POD_IP` (downward API), on group members `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK=0`, `LOCAL_WORLD_SIZE=1`, `MASTER_ADDR=<rank-0 host>.<service>.<ns>.svc`,
//! `MASTER_PORT`, then `Compute::env` (which may not redefine any of these).
//!
//! The pod: one container named `actor`, a UDP container port `kt-quic`,
//! `restartPolicy: Never` (kt restarts actors itself), `terminationGracePeriodSeconds: 10`,
//! `enableServiceLinks: false`, no API token unless `Compute::service_account` names one,
//! and `Compute`'s pod patches applied last.

mod contract;
mod group;
mod meta;
mod names;
mod patch;
mod plan;
mod pod;
mod resources;
mod scheduling;
mod secret;
mod session;
mod volumes;
mod yaml;

#[cfg(test)]
mod tests;

pub use contract::*;
pub use group::{group_manifests, group_service};
pub(crate) use meta::owner_references;
pub use names::{
    LABEL_VALUE_MAX, NAME_MAX, SESSION_ID_MAX, SessionId, dns_label, group_service_name,
    incarnation_pod_name, label_value, member_hostname, pod_name, session_root_name,
    short_type_name, worker_secret_name, worker_secret_of_pod,
};
pub use plan::{
    ActorPod, GroupRank, Owner, PlacementGroup, PlacementStrategy, SessionRoot, WorkerFiles,
};
pub use pod::{actor_pod, actor_pod_named};
pub use resources::GPU_RESOURCE;
pub use secret::{worker_secret, worker_secret_named};
pub use session::{session_owner, session_root};
pub use yaml::{Manifest, to_yaml};
