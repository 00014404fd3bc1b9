//! Object metadata shared by every builder: labels, annotations and the owner reference
//! that ties an owned actor's objects to its session root.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::contract::*;
use super::names::{SessionId, label_value, short_type_name};
use super::plan::{ActorPod, Owner};

/// The labels every kt object carries.
pub(crate) fn base_labels(session: &SessionId, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
        (LABEL_SESSION.to_string(), session.to_string()),
    ])
}

/// The owner reference to the session root, or none for a detached actor.
///
/// `blockOwnerDeletion` makes a foreground delete of the root wait until the pods are
/// gone, so "the session is deleted" means its GPUs are free. `controller` is left unset:
/// a ConfigMap reconciles nothing, and claiming the single controller slot would make
/// tools report the root as the pods' controller and keep a real one from adopting them.
pub(crate) fn owner_references(owner: &Owner) -> Option<Vec<OwnerReference>> {
    match owner {
        Owner::Detached => None,
        Owner::Session(root) => Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: root.name.clone(),
            uid: root.uid.clone(),
            block_owner_deletion: Some(true),
            controller: None,
        }]),
    }
}

/// Labels of an actor's pod and Secret.
pub(crate) fn actor_labels(plan: &ActorPod) -> BTreeMap<String, String> {
    let mut labels = base_labels(&plan.session, "actor");
    let actor = label_value(&plan.actor_name);
    labels.insert(
        LABEL_NAME.into(),
        label_value(short_type_name(&plan.type_name)),
    );
    labels.insert(LABEL_INSTANCE.into(), actor.clone());
    labels.insert(LABEL_ACTOR.into(), actor);
    if let Some(group) = &plan.group {
        labels.insert(LABEL_GROUP.into(), label_value(&group.group));
        labels.insert(LABEL_RANK.into(), group.rank.to_string());
    }
    if let Some(placement) = &plan.placement {
        labels.insert(LABEL_PLACEMENT_GROUP.into(), label_value(&placement.name));
    }
    labels
}

/// Annotations of an actor's pod and Secret: the facts labels cannot hold verbatim.
pub(crate) fn actor_annotations(plan: &ActorPod) -> BTreeMap<String, String> {
    let lifetime = match plan.owner {
        Owner::Session(_) => "owned",
        Owner::Detached => "detached",
    };
    let mut annotations = BTreeMap::from([
        (ANNOTATION_ACTOR_NAME.to_string(), plan.actor_name.clone()),
        (ANNOTATION_TYPE_NAME.to_string(), plan.type_name.clone()),
        (ANNOTATION_LIFETIME.to_string(), lifetime.to_string()),
    ]);
    if let Some(group) = &plan.group {
        annotations.insert(ANNOTATION_WORLD_SIZE.into(), group.world_size.to_string());
    }
    annotations
}

/// Metadata of one of an actor's objects named `name`.
pub(crate) fn actor_meta(plan: &ActorPod, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(actor_labels(plan)),
        annotations: Some(actor_annotations(plan)),
        owner_references: owner_references(&plan.owner),
        ..ObjectMeta::default()
    }
}
