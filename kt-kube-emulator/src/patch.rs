//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
//! and server-side apply (treated as a strategic merge; field managers are not tracked).
//!
//! Merge and JSON patch are the `json-patch` crate's. Strategic merge is Kubernetes-specific:
//! lists named in [`merge_key`] merge element by element on a key instead of being replaced.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// A PATCH content type the emulator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    /// The patch kind for a `Content-Type` header value.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        match mime {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies `patch` (already parsed from the body) to `target`.
pub(crate) fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(target, &ops).map_err(|e| {
                ApiError::invalid_patch(format!("the JSON patch could not be applied: {e}"))
            })
        }
        PatchKind::Strategic | PatchKind::Apply => {
            strategic_merge(target, patch);
            Ok(())
        }
    }
}

/// The key on which elements of the list field `field` merge, if it is a merging list.
fn merge_key(field: &str, item: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" if item.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Lists of scalars that merge as a set union (`patchStrategy: merge` on a string list).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn directive<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Strategic merge of `patch` into `target`.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    match directive(patch, "$patch") {
        Some("replace") => {
            *target = without_directives(patch);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Array(items) => {
                let existing = target_map.get_mut(key).and_then(Value::as_array_mut);
                match existing {
                    Some(existing) => merge_list(existing, items, key),
                    None => {
                        let items: Vec<Value> = items
                            .iter()
                            .filter(|i| directive(i, "$patch") != Some("delete"))
                            .map(without_directives)
                            .collect();
                        target_map.insert(key.clone(), Value::Array(items));
                    }
                }
            }
            Value::Object(_) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(slot, value);
                if slot.is_null() {
                    target_map.remove(key);
                }
            }
            scalar => {
                target_map.insert(key.clone(), scalar.clone());
            }
        }
    }
}

fn merge_list(existing: &mut Vec<Value>, items: &[Value], field: &str) {
    if is_set_list(field) {
        for item in items {
            if !existing.contains(item) {
                existing.push(item.clone());
            }
        }
        return;
    }
    let Some(first) = items.first() else {
        existing.clear();
        return;
    };
    let Some(key) = merge_key(field, first) else {
        *existing = items.iter().map(without_directives).collect();
        return;
    };
    for item in items {
        let id = item.get(key);
        let position = existing
            .iter()
            .position(|e| id.is_some() && e.get(key) == id);
        match (directive(item, "$patch"), position) {
            (Some("delete"), Some(i)) => {
                existing.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic_merge(&mut existing[i], item),
            (_, None) => existing.push(without_directives(item)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_labels() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        apply(
            PatchKind::Merge,
            &mut obj,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        )
        .expect("applies");
        assert_eq!(obj["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(obj["spec"]["x"], 1);
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let mut obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        apply(
            PatchKind::Merge,
            &mut obj,
            &json!({"spec": {"containers": [{"name": "c"}]}}),
        )
        .expect("applies");
        assert_eq!(obj["spec"]["containers"], json!([{"name": "c"}]));
    }

    #[test]
    fn strategic_merge_merges_lists_by_key() {
        let mut obj = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "image": "x2", "env": [{"name": "F", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "z"}
        ]}});
        apply(PatchKind::Strategic, &mut obj, &patch).expect("applies");
        assert_eq!(
            obj["spec"]["containers"],
            json!([
                {"name": "a", "image": "x2", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
                {"name": "c", "image": "z"}
            ])
        );
    }

    #[test]
    fn strategic_merge_conditions_finalizers_and_replace() {
        let mut obj = json!({
            "metadata": {"finalizers": ["a"], "annotations": {"k": "v"}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}
        });
        let patch = json!({
            "metadata": {"finalizers": ["b"], "annotations": {"$patch": "replace", "n": "m"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}]}
        });
        apply(PatchKind::Strategic, &mut obj, &patch).expect("applies");
        assert_eq!(obj["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(obj["metadata"]["annotations"], json!({"n": "m"}));
        assert_eq!(
            obj["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}
            ])
        );
    }

    #[test]
    fn json_patch_ops_and_failures() {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}}});
        let ops = json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                         {"op": "remove", "path": "/metadata/labels/a"}]);
        apply(PatchKind::Json, &mut obj, &ops).expect("applies");
        assert_eq!(obj["metadata"]["labels"], json!({"b": "2"}));
        let bad = json!([{"op": "remove", "path": "/nope"}]);
        assert_eq!(
            apply(PatchKind::Json, &mut obj, &bad).map_err(|e| e.code.as_u16()),
            Err(422)
        );
        assert!(PatchKind::from_content_type("text/plain").is_err());
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8").ok(),
            Some(PatchKind::Merge)
        );
    }
}
