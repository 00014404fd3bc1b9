//! core/v1 Events about pods, as the scheduler and the kubelet record them (what
//! `kubectl describe pod` shows under "Events").

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::resources;
use crate::time;

/// Who reports an event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Scheduler,
    Kubelet,
}

/// Records an event about `pod` (optionally about one of its containers).
pub(crate) fn record(
    cluster: &Cluster,
    pod: &Value,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
    source: Source,
) {
    let Some(events) = resources::find("", "v1", "events") else {
        return;
    };
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (name, namespace) = (s("/metadata/name"), s("/metadata/namespace"));
    // The kubelet reporting is the one of the pod's node.
    let node = s("/spec/nodeName");
    let component = match source {
        Source::Scheduler => "default-scheduler",
        Source::Kubelet => "kubelet",
    };
    let mut involved = json!({
        "kind": "Pod", "apiVersion": "v1", "namespace": namespace, "name": name,
        "uid": s("/metadata/uid"), "resourceVersion": s("/metadata/resourceVersion"),
    });
    if let Some(c) = container {
        involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
    }
    let now = time::now();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let event = json!({
        "metadata": {"name": format!("{name}.{}", &suffix[..16]), "namespace": namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": match source {
            Source::Scheduler => json!({"component": component}),
            Source::Kubelet => json!({"component": component, "host": node}),
        },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": if warning { "Warning" } else { "Normal" },
        "reportingComponent": component,
        "reportingInstance": match source { Source::Scheduler => String::new(), Source::Kubelet => node },
    });
    // Events are best effort, as in a real cluster.
    let _ = cluster.create(events, &namespace, event, false);
}
