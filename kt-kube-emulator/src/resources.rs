//! The resource types the emulator serves, and the discovery documents that describe them.
//!
//! Storage is generic (every object is a `serde_json::Value`), so adding a resource is one
//! line in [`RESOURCES`]; only pods get behaviour beyond storage (see `kubelet`).

use serde_json::{Value, json};

/// One served resource type.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ResourceType {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Plural path segment (`pods`).
    pub plural: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the `/status` subresource exists; if so, a plain update keeps the old status.
    pub has_status: bool,
    /// Short names for `kubectl`.
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as the real API server names a resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn is_pod(&self) -> bool {
        self.group.is_empty() && self.plural == "pods"
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }
}

const fn core(
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        plural,
        kind,
        namespaced,
        has_status,
        short_names,
    }
}

const fn grouped(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    has_status: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced: true,
        has_status,
        short_names: &[],
    }
}

/// Every resource the emulator serves. Only storage semantics apply beyond pods: no
/// controller runs for deployments, jobs and the like.
pub(crate) static RESOURCES: &[ResourceType] = &[
    core("pods", "Pod", true, true, &["po"]),
    core("services", "Service", true, true, &["svc"]),
    core("secrets", "Secret", true, false, &[]),
    core("configmaps", "ConfigMap", true, false, &["cm"]),
    core("events", "Event", true, false, &["ev"]),
    core("serviceaccounts", "ServiceAccount", true, false, &["sa"]),
    core("endpoints", "Endpoints", true, false, &["ep"]),
    core(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
        &["pvc"],
    ),
    core("namespaces", "Namespace", false, true, &["ns"]),
    core("nodes", "Node", false, true, &["no"]),
    grouped("coordination.k8s.io", "v1", "leases", "Lease", false),
    grouped("apps", "v1", "deployments", "Deployment", true),
    grouped("apps", "v1", "statefulsets", "StatefulSet", true),
    grouped("apps", "v1", "replicasets", "ReplicaSet", true),
    grouped("batch", "v1", "jobs", "Job", true),
    grouped(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
];

/// The resource served under `group`/`version` with this plural.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The pod resource type.
pub(crate) fn pods() -> &'static ResourceType {
    &RESOURCES[0]
}

/// The node resource type.
pub(crate) fn nodes() -> &'static ResourceType {
    &RESOURCES[9]
}

/// The namespace resource type.
pub(crate) fn namespaces() -> &'static ResourceType {
    &RESOURCES[8]
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `GET /api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`.
pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(g, v)| group_json(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`, if the group is served.
pub(crate) fn api_group(group: &str) -> Option<Value> {
    let (g, v) = groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_json(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`, if served.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources = Vec::new();
    for r in served {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
            "shortNames": r.short_names,
        }));
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if r.is_pod() {
            for (sub, kind, verbs) in [
                ("log", "Pod", vec!["get"]),
                (
                    "portforward",
                    "PodPortForwardOptions",
                    vec!["create", "get"],
                ),
                ("eviction", "Eviction", vec!["create"]),
            ] {
                resources.push(json!({
                    "name": format!("pods/{sub}"), "singularName": "", "namespaced": true,
                    "kind": kind, "verbs": verbs,
                }));
            }
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-kt-emulator",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_indices_name_the_right_types() {
        assert_eq!(pods().kind, "Pod");
        assert_eq!(nodes().kind, "Node");
        assert_eq!(namespaces().kind, "Namespace");
    }

    #[test]
    fn discovery_lists_groups_and_resources() {
        let list = api_group_list();
        assert!(
            list["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "apps"))
        );
        let core = api_resource_list("", "v1").expect("core is served");
        assert_eq!(core["groupVersion"], "v1");
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
