//! `meta.k8s.io/v1` `Table` responses, which `kubectl get` asks for (`Accept: ...;as=Table`)
//! to print its columns. Pods get kubectl's usual columns; other kinds get Name and Age.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Whether the `Accept` header asks for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn column(name: &str, kind: &str, priority: u8, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" },
           "description": description, "priority": priority})
}

/// "5s", "3m", "2h", "4d": how long ago an RFC 3339 timestamp was.
fn age(timestamp: Option<&str>) -> String {
    let Some(then) = timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = jiff::Timestamp::now()
        .as_second()
        .saturating_sub(then.as_second())
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// kubectl's STATUS of a pod: the most specific reason available.
fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = pod
        .pointer("/status/reason")
        .or(pod.pointer("/status/phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    for c in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let waiting = c.pointer("/state/waiting/reason").and_then(Value::as_str);
        let terminated = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str);
        if let Some(r) = waiting.or(terminated).filter(|r| !r.is_empty()) {
            reason = r.to_string();
        }
    }
    reason
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string()
    };
    vec![
        json!(s("/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        json!(age(pod
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str))),
        json!(s("/status/podIP")),
        json!(s("/spec/nodeName")),
    ]
}

/// The Table for `items` of `resource`.
pub(crate) fn table(resource: &ResourceType, items: &[Value], resource_version: &str) -> Value {
    let pods = resource.is_pod();
    let columns = if pods {
        vec![
            column("Name", "string", 0, "Name of the pod"),
            column(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted.",
            ),
            column("Age", "string", 0, "Time since the object was created."),
            column("IP", "string", 1, "IP address assigned to the pod"),
            column("Node", "string", 1, "Name of the node assigned to the pod"),
        ]
    } else {
        vec![
            column("Name", "string", 0, "Name of the object"),
            column("Age", "string", 0, "Time since the object was created."),
        ]
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let cells = if pods {
                pod_cells(item)
            } else {
                vec![
                    item.pointer("/metadata/name")
                        .cloned()
                        .unwrap_or(Value::Null),
                    json!(age(item
                        .pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str))),
                ]
            };
            let object = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item.get("metadata").cloned().unwrap_or_default(),
            });
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    #[test]
    fn accept_headers() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }

    #[test]
    fn pod_rows_use_the_most_specific_reason() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "127.0.1.1", "containerStatuses": [
                {"ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let t = table(resources::pods(), &[pod], "7");
        assert_eq!(t["rows"][0]["cells"][1], "0/1");
        assert_eq!(t["rows"][0]["cells"][2], "CrashLoopBackOff");
        assert_eq!(t["rows"][0]["cells"][3], 3);
    }
}
