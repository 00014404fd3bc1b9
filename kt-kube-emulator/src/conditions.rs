//! Pod conditions as the kubelet and the scheduler write them: one shape for a
//! condition, and one merge that keeps `lastTransitionTime` while a status stays the same.

use serde_json::{Value, json};

use crate::time;

/// A condition of type `kind`, `True` when `ok`, with its reason and message if any.
pub(crate) fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<&str>,
) -> Value {
    let mut c =
        json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Merges `ours` into the stored conditions, keeping `lastTransitionTime` while the status
/// stays the same (what watchers use to order transitions).
pub(crate) fn merge(existing: Option<&Value>, ours: Vec<Value>) -> Value {
    let mut out: Vec<Value> = existing
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for mut c in ours {
        let kind = c["type"].clone();
        match out.iter_mut().find(|e| e["type"] == kind) {
            Some(e) => {
                let same = e["status"] == c["status"];
                c["lastTransitionTime"] = if same {
                    e["lastTransitionTime"].clone()
                } else {
                    json!(time::now())
                };
                *e = c;
            }
            None => {
                c["lastTransitionTime"] = json!(time::now());
                out.push(c);
            }
        }
    }
    Value::Array(out)
}
