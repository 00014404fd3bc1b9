//! Multi-document YAML for `kt manifest`: what kt would create, to read, diff or apply
//! by hand.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kt_core::{Error, Result};
use serde::Serialize;

/// One object kt creates, of any of the kinds it uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Manifest {
    /// An actor's pod.
    Pod(Box<Pod>),
    /// A group's headless Service.
    Service(Box<Service>),
    /// A worker's Secret.
    Secret(Box<Secret>),
    /// The session root.
    ConfigMap(Box<ConfigMap>),
}

impl From<Pod> for Manifest {
    fn from(pod: Pod) -> Self {
        Manifest::Pod(Box::new(pod))
    }
}

impl From<Service> for Manifest {
    fn from(service: Service) -> Self {
        Manifest::Service(Box::new(service))
    }
}

impl From<Secret> for Manifest {
    fn from(secret: Secret) -> Self {
        Manifest::Secret(Box::new(secret))
    }
}

impl From<ConfigMap> for Manifest {
    fn from(config_map: ConfigMap) -> Self {
        Manifest::ConfigMap(Box::new(config_map))
    }
}

/// The objects as YAML documents separated by `---`, each with its `apiVersion` and `kind`.
pub fn to_yaml(objects: &[Manifest]) -> Result<String> {
    serde_saphyr::to_string_multiple(objects).map_err(|e| Error::Encode {
        what: "manifests as YAML".into(),
        message: e.to_string(),
    })
}
