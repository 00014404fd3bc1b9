//! Shape tests: what each builder emits, field by field, for the contract in the module
//! docs. The schema check of the same shapes runs in CI (`examples/write_manifests.rs`).

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, PodSpec};
use kt_core::{Compute, Error, TaintEffect, Toleration, Volume};
use serde_json::json;

use super::*;

fn session() -> SessionId {
    SessionId::new("s1").expect("valid session id")
}

fn owner() -> Owner {
    Owner::Session(SessionRoot {
        name: "kt-session-s1".into(),
        uid: "0f6c2a4e-1111-2222-3333-444455556666".into(),
    })
}

fn plan(compute: Compute) -> ActorPod {
    ActorPod {
        session: session(),
        namespace: "ml".into(),
        actor_name: "counter-7".into(),
        type_name: "demo::Counter".into(),
        image: "registry.example/app:1".into(),
        command: vec!["/app/bin/demo".into()],
        compute,
        port: crate::placement::DEFAULT_PORT,
        group: None,
        placement: None,
        owner: owner(),
    }
}

fn spec(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().expect("spec")
}

fn container(pod: &Pod) -> &Container {
    &spec(pod).containers[0]
}

fn env<'a>(pod: &'a Pod, name: &str) -> Option<&'a EnvVar> {
    container(pod).env.iter().flatten().find(|e| e.name == name)
}

fn env_value<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    env(pod, name).and_then(|e| e.value.as_deref())
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn invalid_message<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::InvalidOptions { problems }) => problems.join("; "),
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

#[test]
fn an_actor_pod_runs_the_binary_in_worker_mode_with_files_not_env_secrets() {
    let pod = actor_pod(&plan(Compute::new().env("LOG", "debug"))).expect("valid");
    assert_eq!(pod.metadata.name.as_deref(), Some("kt-s1-counter-7"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("ml"));
    let c = container(&pod);
    assert_eq!(c.name, CONTAINER_NAME);
    assert_eq!(c.image.as_deref(), Some("registry.example/app:1"));
    assert_eq!(c.command, Some(vec!["/app/bin/demo".to_string()]));
    assert_eq!(env_value(&pod, ENV_WORKER), Some("1"));
    assert_eq!(env_value(&pod, ENV_WORKER_DIR), Some(WORKER_DIR));
    assert_eq!(env_value(&pod, "LOG"), Some("debug"));
    let ip = env(&pod, ENV_POD_IP).and_then(|e| e.value_from.as_ref());
    let path = ip
        .and_then(|f| f.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(path, Some("status.podIP"));
    for e in c.env.iter().flatten() {
        let v = e.value.as_deref().unwrap_or_default();
        assert!(!v.contains("PRIVATE KEY"), "key material in env {}", e.name);
    }
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == WORKER_VOLUME);
    assert_eq!(
        mount.map(|m| (m.mount_path.as_str(), m.read_only)),
        Some((WORKER_DIR, Some(true)))
    );
    let secret = spec(&pod)
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .expect("worker secret volume");
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("kt-s1-counter-7-worker")
    );
    assert_eq!(secret.default_mode, Some(0o400));
    let port = &c.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (
            port.name.as_deref(),
            port.container_port,
            port.protocol.as_deref()
        ),
        (
            Some(PORT_NAME),
            i32::from(crate::placement::DEFAULT_PORT),
            Some("UDP")
        )
    );
    let s = spec(&pod);
    assert_eq!(s.restart_policy.as_deref(), Some("Never"));
    assert_eq!(s.enable_service_links, Some(false));
    assert_eq!(s.termination_grace_period_seconds, Some(10));
    assert_eq!(s.automount_service_account_token, Some(false));
    assert_eq!(s.hostname, None);
}

#[test]
fn labels_and_annotations_follow_the_contract() {
    let mut p = plan(Compute::new());
    p.actor_name = "Counter Seven".into();
    let pod = actor_pod(&p).expect("valid");
    assert_eq!(label(&pod, LABEL_MANAGED_BY), Some("kt"));
    assert_eq!(label(&pod, LABEL_COMPONENT), Some("actor"));
    assert_eq!(label(&pod, LABEL_NAME), Some("Counter"));
    assert_eq!(label(&pod, LABEL_SESSION), Some("s1"));
    let actor = label(&pod, LABEL_ACTOR).expect("actor label");
    assert!(actor.starts_with("Counter-Seven-"), "{actor}");
    assert_eq!(label(&pod, LABEL_INSTANCE), Some(actor));
    let annotations = pod.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(annotations[ANNOTATION_ACTOR_NAME], "Counter Seven");
    assert_eq!(annotations[ANNOTATION_TYPE_NAME], "demo::Counter");
    assert_eq!(annotations[ANNOTATION_LIFETIME], "owned");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    assert!(name.starts_with("kt-s1-counter-seven-"), "{name}");
}

#[test]
fn owned_objects_point_at_the_session_root_and_detached_ones_do_not() {
    let pod = actor_pod(&plan(Compute::new())).expect("valid");
    let refs = pod.metadata.owner_references.as_ref().expect("owned");
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].name.as_str()),
        ("ConfigMap", "kt-session-s1")
    );
    assert_eq!(refs[0].block_owner_deletion, Some(true));
    assert_eq!(refs[0].controller, None);

    let mut detached = plan(Compute::new());
    detached.owner = Owner::Detached;
    let pod = actor_pod(&detached).expect("valid");
    assert_eq!(pod.metadata.owner_references, None);
    let lifetime = pod
        .metadata
        .annotations
        .as_ref()
        .map(|a| a[ANNOTATION_LIFETIME].clone());
    assert_eq!(lifetime.as_deref(), Some("detached"));
    let secret = worker_secret(&detached, &WorkerFiles::default());
    assert_eq!(secret.metadata.owner_references, None);
}

#[test]
fn a_gpu_actor_gets_its_scheduling_fields_and_shm() {
    let compute = Compute::new()
        .cpus(8.0)
        .gpus(2)
        .memory("64Gi")
        .image("ghcr.io/team/rl:latest")
        .node_selector("cloud.google.com/gke-accelerator", "nvidia-h100-80gb")
        .toleration(Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule))
        .priority_class("training-high")
        .service_account("trainer")
        .shared_memory("16Gi")
        .command(["/opt/rl/bin/learner"])
        .args(["--log-json"]);
    let pod = actor_pod(&plan(compute)).expect("valid");
    let c = container(&pod);
    assert_eq!(c.image.as_deref(), Some("ghcr.io/team/rl:latest"));
    assert_eq!(c.command, Some(vec!["/opt/rl/bin/learner".to_string()]));
    assert_eq!(c.args, Some(vec!["--log-json".to_string()]));
    let r = c.resources.as_ref().expect("resources");
    assert_eq!(
        r.limits.as_ref().map(|l| l[GPU_RESOURCE].0.as_str()),
        Some("2")
    );
    assert_eq!(r.requests.as_ref().map(|l| l["cpu"].0.as_str()), Some("8"));
    let s = spec(&pod);
    assert_eq!(
        s.node_selector
            .as_ref()
            .map(|n| n["cloud.google.com/gke-accelerator"].as_str()),
        Some("nvidia-h100-80gb")
    );
    let t = &s.tolerations.as_ref().expect("tolerations")[0];
    assert_eq!(t.effect.as_deref(), Some("NoSchedule"));
    assert_eq!(s.priority_class_name.as_deref(), Some("training-high"));
    assert_eq!(s.service_account_name.as_deref(), Some("trainer"));
    assert_eq!(s.automount_service_account_token, None);
    let shm = s
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "dshm")
        .and_then(|v| v.empty_dir.as_ref())
        .expect("shm volume");
    assert_eq!(shm.medium.as_deref(), Some("Memory"));
    assert!(
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/dev/shm")
    );
}

#[test]
fn a_group_is_ranked_pods_behind_a_headless_service() {
    let (service, pods) =
        group_manifests(&plan(Compute::new()), "trainers", 3, 29500).expect("valid group");
    assert_eq!(pods.len(), 3);
    let svc_spec = service.spec.as_ref().expect("spec");
    assert_eq!(svc_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(svc_spec.publish_not_ready_addresses, Some(true));
    let selector = svc_spec.selector.as_ref().expect("selector");
    let service_name = service.metadata.name.clone().expect("name");
    assert_eq!(service_name, "kt-s1-g-trainers");
    assert!(service.metadata.owner_references.is_some());
    for (rank, pod) in pods.iter().enumerate() {
        for (key, value) in selector {
            assert_eq!(label(pod, key), Some(value.as_str()), "selector {key}");
        }
        assert_eq!(label(pod, LABEL_RANK), Some(rank.to_string().as_str()));
        assert_eq!(label(pod, LABEL_GROUP), Some("trainers"));
        assert_eq!(env_value(pod, "RANK"), Some(rank.to_string().as_str()));
        assert_eq!(env_value(pod, "WORLD_SIZE"), Some("3"));
        assert_eq!(env_value(pod, "LOCAL_RANK"), Some("0"));
        assert_eq!(
            env_value(pod, "MASTER_ADDR"),
            Some("trainers-0.kt-s1-g-trainers.ml.svc")
        );
        assert_eq!(env_value(pod, "MASTER_PORT"), Some("29500"));
        let s = spec(pod);
        assert_eq!(s.hostname, Some(format!("trainers-{rank}")));
        assert_eq!(s.subdomain.as_deref(), Some(service_name.as_str()));
        assert_eq!(pod.metadata.name, Some(format!("kt-s1-trainers-{rank}")));
    }
}

#[test]
fn group_members_in_a_queue_are_one_kueue_workload() {
    let (_, pods) =
        group_manifests(&plan(Compute::new().queue("team-a")), "g", 2, 29500).expect("valid");
    for pod in &pods {
        assert_eq!(label(pod, LABEL_KUEUE_QUEUE), Some("team-a"));
        assert_eq!(label(pod, LABEL_KUEUE_POD_GROUP), Some("kt-s1-g-g"));
        let count = pod
            .metadata
            .annotations
            .as_ref()
            .map(|a| a[ANNOTATION_KUEUE_POD_GROUP_COUNT].clone());
        assert_eq!(count.as_deref(), Some("2"));
    }
    let single = actor_pod(&plan(Compute::new().queue("team-a"))).expect("valid");
    assert_eq!(label(&single, LABEL_KUEUE_QUEUE), Some("team-a"));
    assert_eq!(label(&single, LABEL_KUEUE_POD_GROUP), None);
}

#[test]
fn bad_groups_and_plans_are_invalid_options() {
    let mut p = plan(Compute::new());
    p.group = Some(GroupRank {
        group: "g".into(),
        rank: 2,
        world_size: 2,
        master_port: 1,
    });
    assert!(invalid_message(actor_pod(&p)).contains("rank 2 is outside a group of 2"));
    assert!(
        invalid_message(group_manifests(&plan(Compute::new()), "g", 0, 1)).contains("no members")
    );
    assert!(invalid_message(group_service(&plan(Compute::new()))).contains("not a group member"));
    let mut bad_ns = plan(Compute::new());
    bad_ns.namespace = "ML".into();
    assert!(invalid_message(actor_pod(&bad_ns)).contains("namespace 'ML'"));
    let clash = plan(Compute::new().env("KT_WORKER_DIR", "/tmp"));
    assert!(invalid_message(actor_pod(&clash)).contains("KT_WORKER_DIR is set by kt"));
    let (_, _) = group_manifests(&plan(Compute::new()), "g", 1, 1).expect("a group of one");
    let rank_clash = group_manifests(&plan(Compute::new().env("RANK", "3")), "g", 2, 1);
    assert!(invalid_message(rank_clash).contains("RANK is set by kt"));
    let bad_compute = plan(Compute::new().memory("lots"));
    assert!(invalid_message(actor_pod(&bad_compute)).contains("'lots' is not valid"));
    let mut no_image = plan(Compute::new());
    no_image.image = String::new();
    assert!(invalid_message(actor_pod(&no_image)).contains("no container image"));
    let over_worker = plan(Compute::new().volume(Volume::empty_dir("x", "/var/run/kt")));
    assert!(invalid_message(actor_pod(&over_worker)).contains("hide kt's worker files"));
}

#[test]
fn placement_groups_set_affinity_on_the_group_label() {
    for (strategy, together, required) in [
        (PlacementStrategy::Pack, true, false),
        (PlacementStrategy::StrictPack, true, true),
        (PlacementStrategy::Spread, false, false),
        (PlacementStrategy::StrictSpread, false, true),
    ] {
        let mut p = plan(Compute::new());
        p.placement = Some(PlacementGroup {
            name: "pg".into(),
            strategy,
        });
        let pod = actor_pod(&p).expect("valid");
        assert_eq!(label(&pod, LABEL_PLACEMENT_GROUP), Some("pg"));
        let affinity = spec(&pod).affinity.as_ref().expect("affinity");
        assert_eq!(affinity.pod_affinity.is_some(), together, "{strategy:?}");
        assert_eq!(
            affinity.pod_anti_affinity.is_some(),
            !together,
            "{strategy:?}"
        );
        let json = serde_json::to_value(affinity).expect("json");
        let text = json.to_string();
        assert_eq!(
            text.contains("requiredDuring"),
            required,
            "{strategy:?}: {text}"
        );
    }
}

#[test]
fn a_json_patch_adds_a_sidecar_and_a_merge_patch_a_security_context() {
    let compute = Compute::new()
        .pod_json_patch(json!([{
            "op": "add",
            "path": "/spec/containers/-",
            "value": {"name": "log-shipper", "image": "fluent/fluent-bit:3.2"}
        }]))
        .pod_patch(json!({
            "metadata": {"labels": {"team": "rl"}},
            "spec": {"securityContext": {"runAsNonRoot": true, "fsGroup": 1000}}
        }));
    let pod = actor_pod(&plan(compute)).expect("valid patches");
    let s = spec(&pod);
    let names: Vec<&str> = s.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [CONTAINER_NAME, "log-shipper"]);
    let security = s.security_context.as_ref().expect("security context");
    assert_eq!(
        (security.run_as_non_root, security.fs_group),
        (Some(true), Some(1000))
    );
    assert_eq!(label(&pod, "team"), Some("rl"));
    assert_eq!(
        label(&pod, LABEL_MANAGED_BY),
        Some("kt"),
        "kt's labels survive the merge"
    );
}

#[test]
fn the_patch_wins_over_what_kt_set() {
    let compute = Compute::new().pod_patch(json!({"spec": {"terminationGracePeriodSeconds": 60}}));
    let pod = actor_pod(&plan(compute)).expect("valid");
    assert_eq!(spec(&pod).termination_grace_period_seconds, Some(60));
}

#[test]
fn patches_that_break_the_pod_are_invalid_options() {
    let cases = [
        (
            json!({"spec": {"containers": "oops"}}),
            false,
            "leave an invalid pod",
        ),
        (
            json!({"spec": {"restartPolicy": 42}}),
            false,
            "leave an invalid pod",
        ),
        (
            json!({"spec": {"securityContxt": {}}}),
            false,
            "/spec/securityContxt",
        ),
        (
            json!({"metadata": {"name": "elsewhere"}}),
            false,
            "the pod's name",
        ),
        (
            json!({"metadata": {"labels": {"kt.dev/session": null}}}),
            false,
            "kt's labels",
        ),
        (
            json!([{"op": "remove", "path": "/spec/containers/0"}]),
            true,
            "the actor's container",
        ),
        (
            json!([{"op": "replace", "path": "/spec/nope/x", "value": 1}]),
            true,
            "could not be applied",
        ),
        (
            json!([{"op": "frobnicate", "path": "/spec"}]),
            true,
            "not a valid JSON patch",
        ),
    ];
    for (patch, is_json, expected) in cases {
        let compute = if is_json {
            Compute::new().pod_json_patch(patch.clone())
        } else {
            Compute::new().pod_patch(patch.clone())
        };
        let message = invalid_message(actor_pod(&plan(compute)));
        assert!(message.contains(expected), "{patch}: {message}");
    }
}

#[test]
fn the_worker_secret_is_opaque_immutable_and_keyed_by_file() {
    let files = WorkerFiles {
        ca_pem: b"ca".to_vec(),
        cert_pem: b"cert".to_vec(),
        key_pem: b"key".to_vec(),
        config: vec![0x81, 0xa1, 0x61, 0x01],
    };
    let secret = worker_secret(&plan(Compute::new()), &files);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("kt-s1-counter-7-worker")
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.immutable, Some(true));
    let data = secret.data.as_ref().expect("data");
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, [FILE_CA, FILE_CERT, FILE_KEY, FILE_CONFIG]);
    assert_eq!(data[FILE_KEY].0, b"key");
    assert!(secret.metadata.owner_references.is_some());
}

#[test]
fn the_session_root_owns_the_session() {
    let root = session_root(&session(), "ml");
    assert_eq!(root.metadata.name.as_deref(), Some("kt-session-s1"));
    assert!(session_owner(&root).is_err(), "not created yet: no uid");
    let created = ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            uid: Some("u-1".into()),
            ..root.metadata.clone()
        },
        ..root
    };
    let owner = session_owner(&created).expect("created");
    assert_eq!(
        owner,
        Owner::Session(SessionRoot {
            name: "kt-session-s1".into(),
            uid: "u-1".into()
        })
    );
}

#[test]
fn yaml_has_one_document_per_object_with_kind_and_base64_data() {
    let p = plan(Compute::new());
    let objects: Vec<Manifest> = vec![
        session_root(&session(), "ml").into(),
        actor_pod(&p).expect("valid").into(),
        worker_secret(
            &p,
            &WorkerFiles {
                key_pem: b"key".to_vec(),
                ..WorkerFiles::default()
            },
        )
        .into(),
    ];
    let yaml = to_yaml(&objects).expect("yaml");
    assert_eq!(
        yaml.matches("\n---").count() + usize::from(yaml.starts_with("---")),
        2,
        "{yaml}"
    );
    for kind in ["kind: ConfigMap", "kind: Pod", "kind: Secret"] {
        assert!(yaml.contains(kind), "{kind} in {yaml}");
    }
    assert!(yaml.contains("apiVersion: v1"));
    assert!(yaml.contains("a2V5"), "secret data is base64: {yaml}");
}
