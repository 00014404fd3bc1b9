//! Pod volumes materialized as directories in the pod's temporary directory.
//!
//! Secrets and config maps become files (one per key, or per `items` entry), `emptyDir` and
//! the unsupported kinds become empty directories, `hostPath` is the host path itself. The
//! container cannot see them at its `mountPath` (there is no container filesystem), so
//! `env` rewrites mount paths in environment values (see [`super::env`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::cluster::Cluster;
use crate::resources;
use crate::store::Key;

/// Why a pod cannot start yet, as the kubelet reports it in a container's `waiting` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotReady {
    pub reason: &'static str,
    pub message: String,
}

fn io_error(volume: &str, e: std::io::Error) -> NotReady {
    NotReady {
        reason: "ContainerCreating",
        message: format!("MountVolume.SetUp failed for volume \"{volume}\" : {e}"),
    }
}

/// Reads the key → bytes map of a secret (`data`, base64) or config map (`data` as text and
/// `binaryData` as base64) in `namespace`.
pub(crate) fn read_source(
    cluster: &Cluster,
    namespace: &str,
    plural: &str,
    name: &str,
) -> Option<HashMap<String, Vec<u8>>> {
    let resource = resources::find("", "v1", plural)?;
    let object = cluster.store.get(&Key::new(resource, namespace, name))?;
    let mut out = HashMap::new();
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    if let Some(data) = object.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let bytes = if plural == "secrets" {
                decode(v)
            } else {
                v.as_str().unwrap_or_default().as_bytes().to_vec()
            };
            out.insert(k.clone(), bytes);
        }
    }
    if let Some(data) = object.get("binaryData").and_then(Value::as_object) {
        for (k, v) in data {
            out.insert(k.clone(), decode(v));
        }
    }
    Some(out)
}

fn write_files(
    dir: &Path,
    volume: &str,
    source: &Value,
    data: &HashMap<String, Vec<u8>>,
) -> Result<(), NotReady> {
    let items: Vec<(String, String)> = match source.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                Some((
                    i.get("key")?.as_str()?.to_string(),
                    i.get("path")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, rel) in items {
        let Some(bytes) = data.get(&key) else {
            continue;
        };
        // `path` is relative and may not climb out of the volume.
        if Path::new(&rel)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            continue;
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(volume, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| io_error(volume, e))?;
    }
    Ok(())
}

/// Creates every volume of `pod` under `root`; returns volume name → directory.
pub(crate) fn materialize(
    cluster: &Cluster,
    pod: &Value,
    root: &Path,
) -> Result<HashMap<String, PathBuf>, NotReady> {
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = HashMap::new();
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for volume in volumes {
        let Some(name) = volume.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some(path) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
            out.insert(name.to_string(), PathBuf::from(path));
            continue;
        }
        let dir = root.join("volumes").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(name, e))?;
        for (field, plural, name_field, kind) in [
            ("secret", "secrets", "secretName", "secret"),
            ("configMap", "configmaps", "name", "configmap"),
        ] {
            let Some(source) = volume.get(field) else {
                continue;
            };
            let source_name = source
                .get(name_field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            let optional = source
                .get("optional")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match read_source(cluster, namespace, plural, source_name) {
                Some(data) => write_files(&dir, name, source, &data)?,
                None if optional => {}
                None => {
                    return Err(NotReady {
                        reason: "ContainerCreating",
                        message: format!(
                            "MountVolume.SetUp failed for volume \"{name}\" : {kind} \"{source_name}\" not found"
                        ),
                    });
                }
            }
        }
        out.insert(name.to_string(), dir);
    }
    Ok(out)
}
