//! Writes one YAML file per shape of object kt emits on Kubernetes, for CI to check
//! against the official schemas (`.ci/run` runs `kubernetes-validate --strict` on them).
//!
//! ```sh
//! cargo run -p kt-k8s --example write_manifests -- DIR
//! ```

use std::path::{Path, PathBuf};

use kt_core::{Compute, TaintEffect, Toleration, Volume};
use kt_k8s::manifest::{
    ActorPod, Manifest, Owner, PlacementGroup, PlacementStrategy, SessionId, SessionRoot,
    WorkerFiles, actor_pod, group_manifests, session_root, to_yaml, worker_secret,
};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        return Err("usage: write_manifests DIR".into());
    };
    std::fs::create_dir_all(&dir)?;
    for (file, objects) in shapes()? {
        write(&dir, file, &objects)?;
    }
    Ok(())
}

fn write(dir: &Path, file: &str, objects: &[Manifest]) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, to_yaml(objects)?)?;
    println!("{}", path.display());
    Ok(())
}

/// The plan every shape starts from: an owned actor of session `demo1`.
fn base(session: &SessionId) -> ActorPod {
    ActorPod {
        session: session.clone(),
        namespace: "ml".into(),
        actor_name: "counter-7".into(),
        type_name: "demo::Counter".into(),
        image: "registry.example/demo:1.0".into(),
        command: vec!["/app/bin/demo".into()],
        compute: Compute::new()
            .cpus(0.5)
            .memory("512Mi")
            .env("RUST_LOG", "info"),
        port: kt_k8s::placement::DEFAULT_PORT,
        group: None,
        placement: None,
        owner: Owner::Session(SessionRoot {
            name: "kt-session-demo1".into(),
            uid: "6f1b7c2e-4f7a-4c1e-9a51-2d7c0e3b9a10".into(),
        }),
    }
}

fn shapes() -> Result<Vec<(&'static str, Vec<Manifest>)>> {
    let session = SessionId::new("demo1")?;
    let mut shapes = Vec::new();

    shapes.push((
        "session-root.yaml",
        vec![session_root(&session, "ml").into()],
    ));

    let mut detached = base(&session);
    detached.actor_name = "Param Server (main)".into();
    detached.owner = Owner::Detached;
    shapes.push((
        "actor.yaml",
        vec![
            actor_pod(&base(&session))?.into(),
            actor_pod(&detached)?.into(),
        ],
    ));

    let files = WorkerFiles {
        ca_pem: b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec(),
        cert_pem: b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec(),
        key_pem: b"-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n".to_vec(),
        config: vec![0x81, 0xa7, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01],
    };
    shapes.push((
        "worker-secret.yaml",
        vec![worker_secret(&base(&session), &files).into()],
    ));

    let mut gpu = base(&session);
    gpu.actor_name = "learner".into();
    gpu.type_name = "rl::Learner".into();
    gpu.compute = Compute::new()
        .cpus(8.0)
        .gpus(1)
        .memory("64Gi")
        .resource("rdma/hca", 1)
        .image("ghcr.io/team/rl:latest")
        .command(["/opt/rl/bin/train"])
        .args(["--log-format", "json"])
        .node_selector("cloud.google.com/gke-accelerator", "nvidia-h100-80gb")
        .toleration(Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule))
        .toleration(Toleration::equal("dedicated", "ml"))
        .toleration(Toleration::exists("node.kubernetes.io/unreachable").for_seconds(60))
        .priority_class("training-high")
        .service_account("trainer")
        .queue("team-a")
        .shared_memory("16Gi")
        .volume(Volume::pvc("data", "imagenet", "/data").read_only())
        .volume(Volume::secret("s3", "s3-credentials", "/etc/s3"))
        .volume(Volume::config_map("cfg", "train-config", "/etc/train"))
        .volume(Volume::empty_dir("scratch", "/scratch").size_limit("100Gi"))
        .volume(Volume::host_path("nvme", "/mnt/nvme0", "/cache"));
    shapes.push(("gpu-actor.yaml", vec![actor_pod(&gpu)?.into()]));

    let mut member = base(&session);
    member.compute = Compute::new()
        .cpus(4.0)
        .gpus(1)
        .memory("32Gi")
        .queue("team-a");
    let (service, pods) = group_manifests(&member, "trainers", 3, 29500)?;
    let mut group = vec![Manifest::from(service)];
    group.extend(pods.into_iter().map(Manifest::from));
    shapes.push(("group.yaml", group));

    for (file, strategies) in [
        (
            "placement-pack.yaml",
            [PlacementStrategy::Pack, PlacementStrategy::StrictPack],
        ),
        (
            "placement-spread.yaml",
            [PlacementStrategy::Spread, PlacementStrategy::StrictSpread],
        ),
    ] {
        let mut pods = Vec::new();
        for (i, strategy) in strategies.into_iter().enumerate() {
            let mut plan = base(&session);
            plan.actor_name = format!("{strategy:?}-{i}").to_lowercase();
            plan.placement = Some(PlacementGroup {
                name: format!("{strategy:?}").to_lowercase(),
                strategy,
            });
            pods.push(actor_pod(&plan)?.into());
        }
        shapes.push((file, pods));
    }

    let mut patched = base(&session);
    patched.actor_name = "patched".into();
    patched.compute = Compute::new()
        .cpus(1.0)
        .pod_json_patch(json!([{
            "op": "add",
            "path": "/spec/containers/-",
            "value": {
                "name": "log-shipper",
                "image": "fluent/fluent-bit:3.2",
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}
            }
        }]))
        .pod_patch(json!({
            "metadata": {"labels": {"team": "rl"}},
            "spec": {
                "runtimeClassName": "nvidia",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000}
            }
        }));
    shapes.push(("patched-actor.yaml", vec![actor_pod(&patched)?.into()]));

    Ok(shapes)
}
