//! `kt_core::Volume` → pod volumes and container mounts, plus the worker Secret's volume.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kt_core::{Error, Result, VolumeSource};

use super::contract::{WORKER_DIR, WORKER_VOLUME};

/// Owner read-only: the key is the worker's alone, even for other users of the image.
/// The files belong to root; an image that runs as another user needs a pod
/// `securityContext.fsGroup` (a pod patch), with which the kubelet gives that group read
/// access too (mode 0440).
const WORKER_FILE_MODE: i32 = 0o400;

/// The worker Secret as a volume (mounted read-only at [`WORKER_DIR`]).
pub(crate) fn worker_volume(secret_name: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: WORKER_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name.into()),
            default_mode: Some(WORKER_FILE_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: WORKER_VOLUME.into(),
        mount_path: WORKER_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// One user volume and its mount.
pub(crate) fn user_volume(volume: &kt_core::Volume) -> Result<(Volume, VolumeMount)> {
    // kt-core cannot know where a backend mounts its own files; this one keeps
    // /var/run/kt, and a user mount there (or above it) would hide the worker's identity.
    let path = volume.mount_path.trim_end_matches('/');
    let hides_worker_dir = path.is_empty()
        || path == WORKER_DIR
        || WORKER_DIR.starts_with(&format!("{path}/"))
        || path.starts_with(&format!("{WORKER_DIR}/"));
    if hides_worker_dir {
        return Err(Error::invalid_options(format!(
            "compute: volume '{}' is mounted at '{}', which would hide kt's worker files \
                 in {WORKER_DIR}; mount it elsewhere",
            volume.name, volume.mount_path
        )));
    }
    let mut out = Volume {
        name: volume.name.clone(),
        ..Volume::default()
    };
    match &volume.source {
        VolumeSource::PersistentVolumeClaim { claim_name } => {
            out.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name.clone(),
                read_only: volume.read_only.then_some(true),
            });
        }
        VolumeSource::Secret { secret_name } => {
            out.secret = Some(SecretVolumeSource {
                secret_name: Some(secret_name.clone()),
                ..SecretVolumeSource::default()
            });
        }
        VolumeSource::ConfigMap { name } => {
            out.config_map = Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            });
        }
        VolumeSource::EmptyDir {
            in_memory,
            size_limit,
        } => {
            out.empty_dir = Some(EmptyDirVolumeSource {
                medium: in_memory.then(|| "Memory".to_string()),
                size_limit: size_limit.clone().map(Quantity),
            });
        }
        VolumeSource::HostPath { path } => {
            out.host_path = Some(HostPathVolumeSource {
                path: path.clone(),
                type_: None,
            });
        }
    }
    let mount = VolumeMount {
        name: volume.name.clone(),
        mount_path: volume.mount_path.clone(),
        read_only: volume.read_only.then_some(true),
        ..VolumeMount::default()
    };
    Ok((out, mount))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_is_an_in_memory_empty_dir() {
        let (volume, mount) =
            user_volume(&kt_core::Volume::memory("dshm", "/dev/shm").size_limit("8Gi"))
                .expect("valid");
        let empty_dir = volume.empty_dir.expect("empty dir");
        assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
        assert_eq!(empty_dir.size_limit, Some(Quantity("8Gi".into())));
        assert_eq!(mount.mount_path, "/dev/shm");
        assert_eq!(mount.read_only, None);
    }

    #[test]
    fn read_only_reaches_the_mount_and_the_claim() {
        let (volume, mount) =
            user_volume(&kt_core::Volume::pvc("data", "imagenet", "/data").read_only())
                .expect("valid");
        assert_eq!(mount.read_only, Some(true));
        let claim = volume.persistent_volume_claim.expect("claim");
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("imagenet", Some(true))
        );
    }

    #[test]
    fn mounts_over_the_worker_dir_are_rejected() {
        for path in [
            "/var/run/kt",
            "/var/run",
            "/var/run/kt/sub",
            "/",
            "/var/run/",
        ] {
            let volume = kt_core::Volume::empty_dir("x", path);
            assert!(
                matches!(user_volume(&volume), Err(Error::InvalidOptions { .. })),
                "{path}"
            );
        }
        assert!(user_volume(&kt_core::Volume::empty_dir("x", "/var/run/ktx")).is_ok());
        let (worker, mount) = worker_volume("s");
        assert_eq!(worker.secret.and_then(|s| s.default_mode), Some(0o400));
        assert_eq!(mount.read_only, Some(true));
    }
}
