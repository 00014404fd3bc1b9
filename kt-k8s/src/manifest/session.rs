//! The session root: one ConfigMap per driver session, `kt-session-<id>`, that every
//! owned actor's pod, Secret and group Service names as its owner. Deleting it (the
//! driver does on exit; an operator can with `kubectl delete configmap kt-session-<id>`
//! after a driver crash) makes the garbage collector delete them all. Detached actors
//! are not owned, so they survive it.
//!
//! A ConfigMap is the cheapest namespaced object every cluster has and a Role can grant;
//! a custom resource would need a CRD installed by a cluster admin.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kt_core::{Error, Result};

use super::meta::base_labels;
use super::names::{SessionId, session_root_name};
use super::plan::{Owner, SessionRoot};

/// The session root to create when a driver session starts.
pub fn session_root(session: &SessionId, namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(session_root_name(session)),
            namespace: Some(namespace.to_string()),
            labels: Some(base_labels(session, "session")),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "session".to_string(),
            session.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// The owner for the session's owned actors, from the root as the API server returned
/// it; fails when it has no uid yet (it was not created).
pub fn session_owner(root: &ConfigMap) -> Result<Owner> {
    match (&root.metadata.name, &root.metadata.uid) {
        (Some(name), Some(uid)) => Ok(Owner::Session(SessionRoot {
            name: name.clone(),
            uid: uid.clone(),
        })),
        _ => Err(Error::invalid_options(
            "the session root has no name or uid: create it in the cluster first and \
                      pass the object the API server returned",
        )),
    }
}
