//! One actor's pod: the user's binary in worker mode, with its identity mounted from a
//! Secret, its resources, scheduling constraints and volumes, and — last — the user's
//! pod patches.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
};
use kt_core::{Error, Result};

use super::contract::*;
use super::group::{check_rank, group_env};
use super::meta::actor_meta;
use super::names::{group_service_name, member_hostname, pod_name, worker_secret_of_pod};
use super::patch::apply_pod_patches;
use super::plan::ActorPod;
use super::resources::requirements;
use super::scheduling::{placement_affinity, toleration};
use super::volumes::{user_volume, worker_volume};

/// Long enough for `on_stop` hooks to run and a final reply to leave, short enough that
/// a killed actor's GPUs are free again within seconds.
const TERMINATION_GRACE_SECONDS: i64 = 10;

fn invalid(message: String) -> Error {
    Error::invalid_options(message)
}

/// An environment variable from the pod's own fields (the downward API).
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// kt's variables, then the group's, then the user's. A user variable that would
/// override one of kt's is an error rather than a silent loss on either side.
fn container_env(plan: &ActorPod) -> Result<Vec<EnvVar>> {
    let mut env = vec![
        plain_env(ENV_WORKER, "1"),
        plain_env(ENV_WORKER_DIR, WORKER_DIR),
        field_env(ENV_POD_NAME, "metadata.name"),
        field_env(ENV_POD_NAMESPACE, "metadata.namespace"),
        field_env(ENV_POD_IP, "status.podIP"),
    ];
    if let Some(group) = &plan.group {
        env.extend(group_env(plan, group));
    }
    for (name, value) in &plan.compute.env {
        if env.iter().any(|e| &e.name == name) {
            return Err(invalid(format!(
                "compute: environment variable {name} is set by kt on Kubernetes (worker mode, \
                 the pod's identity, a group's torchrun variables); rename yours"
            )));
        }
        env.push(plain_env(name, value));
    }
    Ok(env)
}

fn check_plan(plan: &ActorPod) -> Result<()> {
    plan.compute.validate()?;
    let ns = &plan.namespace;
    let ns_ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if !ns_ok {
        return Err(invalid(format!(
            "namespace '{ns}' is not a valid namespace name (lowercase letters, digits and \
             '-', at most 63)"
        )));
    }
    if plan.actor_name.trim().is_empty() {
        return Err(invalid("an actor's pod needs the actor's name".into()));
    }
    if plan.port == 0 {
        return Err(invalid("the worker port must not be 0".into()));
    }
    if let Some(group) = &plan.group {
        check_rank(group)?;
    }
    Ok(())
}

/// The pod of one actor (a group member when `plan.group` is set), ready to create.
///
/// Fails with [`Error::InvalidOptions`] when the compute or the plan is invalid, or when
/// the compute's pod patches fail or leave an invalid pod.
pub fn actor_pod(plan: &ActorPod) -> Result<Pod> {
    actor_pod_named(plan, &pod_name(&plan.session, &plan.actor_name))
}

/// [`actor_pod`] under the name `name`, mounting the Secret [`worker_secret_of_pod`]
/// names for it: the pod of a later incarnation of the actor (rule S3), whose dead
/// predecessor may still stand under the first name.
pub fn actor_pod_named(plan: &ActorPod, name: &str) -> Result<Pod> {
    check_plan(plan)?;
    let compute = &plan.compute;
    let image = compute
        .pod
        .image
        .clone()
        .unwrap_or_else(|| plan.image.clone());
    if image.trim().is_empty() {
        return Err(invalid(
            "no container image: set one with `Compute::image(\"registry/app:tag\")` or in \
             the Kubernetes placement's defaults"
                .into(),
        ));
    }
    let command = compute
        .pod
        .command
        .clone()
        .unwrap_or_else(|| plan.command.clone());
    if command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(invalid(
            "no command starts the actor's binary: set `Compute::command([...])` or the \
             placement's binary path"
                .into(),
        ));
    }

    let name = name.to_string();
    let (worker, worker_mount) = worker_volume(&worker_secret_of_pod(&name));
    let mut volumes = vec![worker];
    let mut mounts = vec![worker_mount];
    for volume in &compute.pod.volumes {
        let (volume, mount) = user_volume(volume)?;
        volumes.push(volume);
        mounts.push(mount);
    }

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        command: Some(command),
        args: compute.pod.args.clone(),
        env: Some(container_env(plan)?),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: i32::from(plan.port),
            protocol: Some("UDP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(requirements(compute)?),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let mut meta = actor_meta(plan, name);
    if let Some(queue) = &compute.pod.queue {
        let labels = meta.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(LABEL_KUEUE_QUEUE.into(), queue.clone());
        if let Some(group) = &plan.group {
            // One Kueue workload for the whole group: admitted all at once or not at all,
            // so a gang never holds half its GPUs while waiting for the rest.
            labels.insert(
                LABEL_KUEUE_POD_GROUP.into(),
                group_service_name(&plan.session, &group.group),
            );
            meta.annotations.get_or_insert_with(BTreeMap::new).insert(
                ANNOTATION_KUEUE_POD_GROUP_COUNT.into(),
                group.world_size.to_string(),
            );
        }
    }

    let spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        // kt supervises restarts itself: a restarted actor must be rebuilt from its
        // constructor arguments by a fresh worker the driver knows about (a new identity,
        // a new route, `max_restarts` counted in one place). A kubelet restart would
        // bring back a worker nobody dials, and hide the death the driver must report.
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        // Service links inject variables for every Service in the namespace: noise in
        // the actor's environment, and slow pod starts in busy namespaces.
        enable_service_links: Some(false),
        hostname: plan
            .group
            .as_ref()
            .map(|g| member_hostname(&g.group, g.rank)),
        subdomain: plan
            .group
            .as_ref()
            .map(|g| group_service_name(&plan.session, &g.group)),
        node_selector: (!compute.pod.node_selector.is_empty())
            .then(|| compute.pod.node_selector.clone()),
        tolerations: (!compute.pod.tolerations.is_empty())
            .then(|| compute.pod.tolerations.iter().map(toleration).collect()),
        priority_class_name: compute.pod.priority_class.clone(),
        service_account_name: compute.pod.service_account.clone(),
        // Without a service account of its own the actor has no business with the API
        // server: mount no token rather than the namespace default's.
        automount_service_account_token: compute.pod.service_account.is_none().then_some(false),
        affinity: plan
            .placement
            .as_ref()
            .map(|p| placement_affinity(&plan.session, p)),
        ..PodSpec::default()
    };

    let pod = Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    };
    apply_pod_patches(pod, &compute.pod.pod_patches)
}
