//! A container's environment, command line and working directory as the process sees them.
//!
//! Follows the kubelet: `envFrom` first, then `env` (later wins); `valueFrom` reads field
//! references, secrets and config maps; `$(VAR)` in values, `command` and `args` expands to
//! earlier variables (`$$` is a literal `$`).
//!
//! The emulator's one concession to having no container filesystem: any environment value
//! (and the working directory) that starts with a volume's `mountPath` is rewritten to the
//! directory where that volume was materialized. A process that finds its files through
//! environment variables therefore reads them, unchanged, on a real cluster and here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::volumes::{NotReady, read_source};
use crate::cluster::Cluster;

/// Facts about the pod that field references read.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

fn config_error(message: String) -> NotReady {
    NotReady {
        reason: "CreateContainerConfigError",
        message,
    }
}

/// The value of a `fieldRef.fieldPath`.
fn field_ref(pod: &Value, facts: &PodFacts, path: &str) -> Option<String> {
    let s = |p: &str| pod.pointer(p).and_then(Value::as_str).map(str::to_string);
    match path {
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "spec.nodeName" => Some(facts.node_name.clone()),
        "spec.serviceAccountName" => s("/spec/serviceAccountName"),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        other => {
            // metadata.labels['key'] and metadata.annotations['key']
            let (map, rest) = other.split_once("['")?;
            let key = rest.strip_suffix("']")?;
            let field = match map {
                "metadata.labels" => "labels",
                "metadata.annotations" => "annotations",
                _ => return None,
            };
            pod.pointer(&format!("/metadata/{field}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        }
    }
}

/// Expands `$(NAME)` references to variables already in `env`; unknown references stay.
pub(crate) fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites a value that starts with one of `mounts`' container paths (longest first).
pub(crate) fn rewrite_mounts(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount_path, host_path) in mounts {
        let mount = mount_path.trim_end_matches('/');
        if let Some(rest) = value.strip_prefix(mount)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", host_path.display());
        }
    }
    value.to_string()
}

/// The container's volume mounts as (mountPath, host directory), longest mountPath first.
pub(crate) fn mounts(
    container: &Value,
    volumes: &HashMap<String, PathBuf>,
) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let dir = volumes.get(m.get("name")?.as_str()?)?;
                    let sub = m.get("subPath").and_then(Value::as_str).unwrap_or_default();
                    let host = if sub.is_empty() {
                        dir.clone()
                    } else {
                        dir.join(sub)
                    };
                    Some((m.get("mountPath")?.as_str()?.to_string(), host))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    out
}

fn key_ref(
    cluster: &Cluster,
    namespace: &str,
    plural: &str,
    kind: &str,
    selector: &Value,
) -> Result<Option<String>, NotReady> {
    let name = selector
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = selector
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let optional = selector
        .get("optional")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match read_source(cluster, namespace, plural, name) {
        Some(data) => match data.get(key) {
            Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
            None if optional => Ok(None),
            None => Err(config_error(format!(
                "couldn't find key {key} in {kind} {namespace}/{name}"
            ))),
        },
        None if optional => Ok(None),
        None => Err(config_error(format!("{kind} \"{name}\" not found"))),
    }
}

/// The container's environment, in definition order, with mount paths rewritten.
pub(crate) fn resolve(
    cluster: &Cluster,
    pod: &Value,
    container: &Value,
    facts: &PodFacts,
    mounts: &[(String, PathBuf)],
) -> Result<Vec<(String, String)>, NotReady> {
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let set = |name: String,
               value: String,
               order: &mut Vec<String>,
               values: &mut HashMap<String, String>| {
        if !values.contains_key(&name) {
            order.push(name.clone());
        }
        values.insert(name, value);
    };
    for source in container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prefix = source
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (field, plural, kind) in [
            ("secretRef", "secrets", "secret"),
            ("configMapRef", "configmaps", "configmap"),
        ] {
            let Some(r) = source.get(field) else { continue };
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            match read_source(cluster, namespace, plural, name) {
                Some(data) => {
                    let mut keys: Vec<_> = data.into_iter().collect();
                    keys.sort();
                    for (k, v) in keys {
                        set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v).into_owned(),
                            &mut order,
                            &mut values,
                        );
                    }
                }
                None if r.get("optional").and_then(Value::as_bool).unwrap_or(false) => {}
                None => return Err(config_error(format!("{kind} \"{name}\" not found"))),
            }
        }
    }
    for var in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            Some(expand(v, &values))
        } else if let Some(from) = var.get("valueFrom") {
            if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
                Some(field_ref(pod, facts, path).unwrap_or_default())
            } else if let Some(sel) = from.get("secretKeyRef") {
                key_ref(cluster, namespace, "secrets", "secret", sel)?
            } else if let Some(sel) = from.get("configMapKeyRef") {
                key_ref(cluster, namespace, "configmaps", "configmap", sel)?
            } else {
                // resourceFieldRef and the rest are not emulated.
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(name.to_string(), value, &mut order, &mut values);
        }
    }
    Ok(order
        .into_iter()
        .map(|name| {
            let value = values
                .get(&name)
                .map(|v| rewrite_mounts(v, mounts))
                .unwrap_or_default();
            (name, value)
        })
        .collect())
}

/// The working directory: a mount path is rewritten; otherwise used as given.
pub(crate) fn working_dir(container: &Value, mounts: &[(String, PathBuf)]) -> Option<PathBuf> {
    let dir = container
        .get("workingDir")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())?;
    Some(Path::new(&rewrite_mounts(dir, mounts)).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let env = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A) $", &env), "$(A) $");
    }

    #[test]
    fn mount_rewrites_respect_path_boundaries() {
        let mounts = vec![
            (
                "/etc/kt/tls".to_string(),
                PathBuf::from("/tmp/p/volumes/tls"),
            ),
            ("/etc/kt".to_string(), PathBuf::from("/tmp/p/volumes/cfg")),
        ];
        assert_eq!(
            rewrite_mounts("/etc/kt/tls/ca.crt", &mounts),
            "/tmp/p/volumes/tls/ca.crt"
        );
        assert_eq!(rewrite_mounts("/etc/kt/x", &mounts), "/tmp/p/volumes/cfg/x");
        assert_eq!(rewrite_mounts("/etc/ktx", &mounts), "/etc/ktx");
        assert_eq!(rewrite_mounts("/etc/kt", &mounts), "/tmp/p/volumes/cfg");
    }
}
