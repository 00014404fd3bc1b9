//! Applying `Compute`'s pod patches (see `kt_core::PodPatch` for the formats and why).
//!
//! The patches run last, on the pod as JSON, so they win over everything kt set. The
//! result must still be a pod: it is deserialized back into `Pod`, and re-serialized to
//! catch fields the Pod API does not have (k8s-openapi skips unknown fields silently,
//! and a misspelt `securityContxt` would otherwise vanish). The patches may change
//! anything except what kt finds its pods by: name, namespace, kt's labels, the owner
//! references and the actor's container.

use k8s_openapi::api::core::v1::Pod;
use kt_core::{Error, PodPatch, Result};
use serde_json::Value;

use super::contract::{CONTAINER_NAME, LABEL_MANAGED_BY};

fn invalid(message: String) -> Error {
    Error::invalid_options(message)
}

/// Applies `patches` in order to `pod`.
pub(crate) fn apply_pod_patches(pod: Pod, patches: &[PodPatch]) -> Result<Pod> {
    if patches.is_empty() {
        return Ok(pod);
    }
    let mut doc = serde_json::to_value(&pod).map_err(|e| Error::Encode {
        what: "the actor's pod".into(),
        message: e.to_string(),
    })?;
    for (i, patch) in patches.iter().enumerate() {
        let n = i + 1;
        match patch {
            PodPatch::Merge(merge) => json_patch::merge(&mut doc, merge),
            PodPatch::Json(ops) => {
                let ops: json_patch::Patch = serde_json::from_value(ops.clone()).map_err(|e| {
                    invalid(format!(
                        "pod patch #{n} is not a valid JSON patch (RFC 6902): {e}; each \
                         operation looks like {{\"op\": \"add\", \"path\": \"/spec/...\", \
                         \"value\": ...}}"
                    ))
                })?;
                json_patch::patch(&mut doc, &ops).map_err(|e| {
                    invalid(format!(
                        "pod patch #{n} could not be applied: {e}; paths are those of a pod \
                         template, like /spec/containers/- or /metadata/labels/team"
                    ))
                })?;
            }
        }
    }
    let patched: Pod = serde_json::from_value(doc.clone()).map_err(|e| {
        invalid(format!(
            "the pod patches leave an invalid pod: {e}; compare them with the Pod API \
             (`kubectl explain pod.spec`)"
        ))
    })?;
    reject_unknown_fields(&doc, &patched)?;
    check_identity(&pod, &patched)?;
    Ok(patched)
}

/// Fails when the patched JSON has fields the typed pod dropped.
fn reject_unknown_fields(doc: &Value, patched: &Pod) -> Result<()> {
    let typed = serde_json::to_value(patched).map_err(|e| Error::Encode {
        what: "the patched pod".into(),
        message: e.to_string(),
    })?;
    let lost: Vec<String> = json_patch::diff(doc, &typed)
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "the pod patches set fields the Pod API does not have (or set them to null): {}; \
         check their spelling (`kubectl explain pod.spec`)",
        lost.join(", ")
    )))
}

/// Fails when the patches changed what kt finds and owns its pods by.
fn check_identity(before: &Pod, after: &Pod) -> Result<()> {
    let (b, a) = (&before.metadata, &after.metadata);
    let kt_labels = |pod: &Pod| {
        pod.metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("kt.dev/") || k.as_str() == LABEL_MANAGED_BY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let changed = if a.name != b.name {
        Some("the pod's name")
    } else if a.namespace != b.namespace {
        Some("the pod's namespace")
    } else if a.owner_references != b.owner_references {
        Some("the owner references")
    } else if kt_labels(before) != kt_labels(after) {
        Some("kt's labels (kt.dev/*, app.kubernetes.io/managed-by)")
    } else if !after
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .any(|c| c.name == CONTAINER_NAME)
    {
        Some("the actor's container (named \"actor\")")
    } else {
        None
    };
    match changed {
        None => Ok(()),
        Some(what) => Err(invalid(format!(
            "the pod patches change {what}, which kt needs to find and supervise the actor; \
             patch other fields"
        ))),
    }
}
