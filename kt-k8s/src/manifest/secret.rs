//! One worker's Secret: its TLS identity and its config, which the pod mounts read-only
//! at `/var/run/kt`. Key material travels only this way: never in the environment,
//! which `kubectl describe pod` and `/proc/<pid>/environ` show.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::contract::{FILE_CA, FILE_CERT, FILE_CONFIG, FILE_KEY};
use super::meta::actor_meta;
use super::names::worker_secret_name;
use super::plan::{ActorPod, WorkerFiles};

/// The Secret the pod of `plan` mounts: keys `ca.pem`, `tls.crt`, `tls.key` and
/// `worker.msgpack`. Immutable: a worker's identity never changes; a restarted actor
/// gets a new Secret with its pod.
pub fn worker_secret(plan: &ActorPod, files: &WorkerFiles) -> Secret {
    worker_secret_named(
        plan,
        files,
        &worker_secret_name(&plan.session, &plan.actor_name),
    )
}

/// [`worker_secret`] under the name `name` (the Secret of a later incarnation's pod).
pub fn worker_secret_named(plan: &ActorPod, files: &WorkerFiles, name: &str) -> Secret {
    let data = BTreeMap::from([
        (FILE_CA.to_string(), ByteString(files.ca_pem.clone())),
        (FILE_CERT.to_string(), ByteString(files.cert_pem.clone())),
        (FILE_KEY.to_string(), ByteString(files.key_pem.clone())),
        (FILE_CONFIG.to_string(), ByteString(files.config.clone())),
    ]);
    Secret {
        metadata: actor_meta(plan, name.to_string()),
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(data),
        ..Secret::default()
    }
}
