//! [`PodPatch`]: the escape hatch — a raw patch applied to the pod a container backend
//! builds for an actor, after everything kt sets, for whatever [`crate::Compute`] has no
//! knob for (a sidecar, a security context, an init container, runtime class, ...).
//!
//! Two standard patch formats, both as `kubectl patch` knows them:
//!
//! - [`PodPatch::Merge`], a JSON merge patch (RFC 7386, `kubectl patch --type merge`):
//!   a partial pod template, objects merged key by key, `null` deletes. The natural choice
//!   for maps (labels, annotations, `securityContext`). Lists are replaced whole.
//! - [`PodPatch::Json`], a JSON patch (RFC 6902, `kubectl patch --type json`): a list of
//!   operations with paths, for lists — `{"op": "add", "path": "/spec/containers/-", ...}`
//!   appends a sidecar without restating kt's own container.
//!
//! Kubernetes' strategic merge patch (lists merged by a key such as `name`) is not offered:
//! its merge keys live in the Go API types, no maintained Rust implementation exists, and a
//! hand-written copy would differ from `kubectl` in the corners, silently. RFC 7386 plus
//! RFC 6902 cover the same needs with exact, documented semantics.
//!
//! Paths are those of a pod template (`/metadata/...`, `/spec/...`). The backend applies
//! the patches in order, last, and checks the result is still a valid pod.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A raw patch to an actor's pod template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PodPatch {
    /// A JSON merge patch (RFC 7386): a partial pod template, merged into kt's.
    Merge(Value),
    /// A JSON patch (RFC 6902): an array of `{"op", "path", ...}` operations.
    Json(Value),
}

impl PodPatch {
    /// What is wrong with the patch's shape, in the words of `Compute::validate`. The
    /// operations themselves are checked by the backend that applies them.
    pub(crate) fn problem(&self) -> Option<String> {
        match self {
            PodPatch::Merge(Value::Object(_)) | PodPatch::Json(Value::Array(_)) => None,
            PodPatch::Merge(other) => Some(format!(
                "pod patch: a merge patch must be a JSON object shaped like a pod template \
                 ({{\"spec\": {{...}}}}), got {}",
                kind(other)
            )),
            PodPatch::Json(other) => Some(format!(
                "pod JSON patch: an RFC 6902 patch must be a JSON array of operations \
                 ([{{\"op\": \"add\", \"path\": \"/spec/...\", \"value\": ...}}]), got {}",
                kind(other)
            )),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_shapes_are_checked() {
        assert_eq!(PodPatch::Merge(json!({"spec": {}})).problem(), None);
        assert_eq!(PodPatch::Json(json!([])).problem(), None);
        let merge_array = PodPatch::Merge(json!([1])).problem();
        assert!(merge_array.is_some_and(|p| p.contains("got an array")));
        let json_object = PodPatch::Json(json!({"op": "add"})).problem();
        assert!(json_object.is_some_and(|p| p.contains("got an object")));
    }
}
