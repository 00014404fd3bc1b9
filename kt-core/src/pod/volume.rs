//! [`Volume`]: storage mounted into an actor's container — a persistent volume claim, a
//! secret, a config map, scratch space (on disk or in memory) or a host path.
//!
//! Backend-neutral like the rest of [`crate::Compute`]: the Kubernetes backend turns each
//! into a pod volume plus a volume mount; backends without containers reject them.

use serde::{Deserialize, Serialize};

use super::names::{is_dns_label, is_dns_subdomain};

/// Where the mounted data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// An existing persistent volume claim in the actor's namespace.
    PersistentVolumeClaim {
        /// The claim's name.
        claim_name: String,
    },
    /// An existing secret, one file per key.
    Secret {
        /// The secret's name.
        secret_name: String,
    },
    /// An existing config map, one file per key.
    ConfigMap {
        /// The config map's name.
        name: String,
    },
    /// Scratch space that lives as long as the pod.
    EmptyDir {
        /// Keep it in RAM (tmpfs) instead of on the node's disk; counts against memory.
        in_memory: bool,
        /// The most it may hold, as a quantity (`"16Gi"`).
        size_limit: Option<String>,
    },
    /// A directory of the node itself (needs a permissive pod security policy).
    HostPath {
        /// The path on the node.
        path: String,
    },
}

/// One volume and where the actor sees it.
///
/// ```
/// use kt_core::Volume;
/// let data = Volume::pvc("data", "imagenet", "/data").read_only();
/// assert!(data.read_only);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The volume's name inside the pod (a DNS label, unique per actor).
    pub name: String,
    /// The absolute path inside the container.
    pub mount_path: String,
    /// Mount it read-only.
    pub read_only: bool,
    /// Where the data comes from.
    pub source: VolumeSource,
    /// Builder mistakes, reported by `Compute::validate` like the compute builder's own.
    problems: Vec<String>,
}

impl Volume {
    fn new(name: impl Into<String>, mount_path: impl Into<String>, source: VolumeSource) -> Self {
        Volume {
            name: name.into(),
            mount_path: mount_path.into(),
            read_only: false,
            source,
            problems: Vec::new(),
        }
    }

    /// Mounts the persistent volume claim `claim` at `mount_path`.
    pub fn pvc(
        name: impl Into<String>,
        claim: impl Into<String>,
        mount_path: impl Into<String>,
    ) -> Self {
        let claim_name = claim.into();
        Volume::new(
            name,
            mount_path,
            VolumeSource::PersistentVolumeClaim { claim_name },
        )
    }

    /// Mounts the keys of secret `secret` as files under `mount_path` (read-only).
    pub fn secret(
        name: impl Into<String>,
        secret: impl Into<String>,
        mount_path: impl Into<String>,
    ) -> Self {
        let secret_name = secret.into();
        Volume::new(name, mount_path, VolumeSource::Secret { secret_name }).read_only()
    }

    /// Mounts the keys of config map `config_map` as files under `mount_path` (read-only).
    pub fn config_map(
        name: impl Into<String>,
        config_map: impl Into<String>,
        mount_path: impl Into<String>,
    ) -> Self {
        let name_of_map = config_map.into();
        Volume::new(
            name,
            mount_path,
            VolumeSource::ConfigMap { name: name_of_map },
        )
        .read_only()
    }

    /// Scratch space on the node's disk at `mount_path`, gone with the pod.
    pub fn empty_dir(name: impl Into<String>, mount_path: impl Into<String>) -> Self {
        let source = VolumeSource::EmptyDir {
            in_memory: false,
            size_limit: None,
        };
        Volume::new(name, mount_path, source)
    }

    /// Scratch space in RAM (tmpfs) at `mount_path`. `Volume::memory("dshm", "/dev/shm")`
    /// is the usual fix for NCCL and PyTorch data loaders that outgrow a container's 64 MiB
    /// default `/dev/shm`; see also [`crate::Compute::shared_memory`].
    pub fn memory(name: impl Into<String>, mount_path: impl Into<String>) -> Self {
        let source = VolumeSource::EmptyDir {
            in_memory: true,
            size_limit: None,
        };
        Volume::new(name, mount_path, source)
    }

    /// The node's directory `path` at `mount_path`.
    pub fn host_path(
        name: impl Into<String>,
        path: impl Into<String>,
        mount_path: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Volume::new(name, mount_path, VolumeSource::HostPath { path })
    }

    /// Mounts the volume read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Caps an empty-dir volume at `quantity` (`"16Gi"`); checked by `Compute::validate`.
    /// Other volume kinds have no size to cap, so the call is reported there as a mistake.
    pub fn size_limit(mut self, quantity: impl Into<String>) -> Self {
        match &mut self.source {
            VolumeSource::EmptyDir { size_limit, .. } => *size_limit = Some(quantity.into()),
            _ => self.problems.push(format!(
                "volume '{}': only empty-dir volumes (`Volume::empty_dir`, `Volume::memory`) \
                 take a size limit",
                self.name
            )),
        }
        self
    }

    /// What is wrong with this volume on its own, in the words of `Compute::validate`.
    pub(crate) fn problem(&self) -> Option<String> {
        if let Some(problem) = self.problems.first() {
            return Some(problem.clone());
        }
        let name = &self.name;
        if !is_dns_label(name) {
            return Some(format!(
                "volume '{name}': the name must be lowercase letters, digits and '-', at most \
                 63 characters"
            ));
        }
        if name.starts_with("kt-") {
            return Some(format!(
                "volume '{name}': names starting with 'kt-' are kept for kt's own volumes; \
                 pick another name"
            ));
        }
        if !self.mount_path.starts_with('/') || self.mount_path.contains(':') {
            return Some(format!(
                "volume '{name}': the mount path must be absolute (start with '/') without ':', \
                 got '{}'",
                self.mount_path
            ));
        }
        let named = |kind: &str, value: &str| {
            (!is_dns_subdomain(value)).then(|| {
                format!(
                    "volume '{name}': the {kind} name '{value}' is not a valid name (lowercase \
                     letters, digits, '-' and '.')"
                )
            })
        };
        match &self.source {
            VolumeSource::PersistentVolumeClaim { claim_name } => named("claim", claim_name),
            VolumeSource::Secret { secret_name } => named("secret", secret_name),
            VolumeSource::ConfigMap { name: map } => named("config map", map),
            VolumeSource::HostPath { path } => (!path.starts_with('/'))
                .then(|| format!("volume '{name}': the host path must be absolute, got '{path}'")),
            VolumeSource::EmptyDir { size_limit, .. } => size_limit.as_deref().and_then(|q| {
                crate::quantity::parse_quantity(q)
                    .err()
                    .map(|problem| format!("volume '{name}': size limit: {problem}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_source_mount_and_mode() {
        let shm = Volume::memory("dshm", "/dev/shm").size_limit("8Gi");
        assert_eq!(
            shm.source,
            VolumeSource::EmptyDir {
                in_memory: true,
                size_limit: Some("8Gi".into())
            }
        );
        assert_eq!(shm.problem(), None);
        assert!(Volume::secret("creds", "s3-creds", "/etc/s3").read_only);
        assert!(Volume::config_map("cfg", "app-config", "/etc/app").read_only);
        assert!(!Volume::pvc("data", "claim", "/data").read_only);
        assert_eq!(
            Volume::host_path("nvme", "/mnt/nvme", "/scratch").problem(),
            None
        );
    }

    #[test]
    fn bad_volumes_are_explained() {
        let relative = Volume::empty_dir("scratch", "tmp").problem();
        assert!(relative.is_some_and(|p| p.contains("must be absolute")));
        let upper = Volume::empty_dir("Scratch", "/tmp").problem();
        assert!(upper.is_some_and(|p| p.contains("lowercase")));
        let reserved = Volume::empty_dir("kt-x", "/x").problem();
        assert!(reserved.is_some_and(|p| p.contains("kept for kt")));
        let sized_pvc = Volume::pvc("data", "claim", "/data")
            .size_limit("1Gi")
            .problem();
        assert!(sized_pvc.is_some_and(|p| p.contains("volume 'data': only empty-dir")));
        let bad_size = Volume::memory("dshm", "/dev/shm")
            .size_limit("huge")
            .problem();
        assert!(bad_size.is_some_and(|p| p.contains("'huge' is not valid")));
    }
}
