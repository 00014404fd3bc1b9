//! Groups: N ranked pods that find each other, and the headless Service that gives each
//! a stable DNS name.
//!
//! Every member gets torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK=0` and
//! `LOCAL_WORLD_SIZE=1` — one worker per pod — and `MASTER_ADDR`/`MASTER_PORT`), so
//! `torch.distributed` and NCCL bootstrap without extra code. `MASTER_ADDR` is rank 0's
//! name through the Service, `<hostname>.<service>.<namespace>.svc`, known before any pod
//! exists (an IP is not): each member sets `hostname` and `subdomain`, and the Service is
//! headless (`clusterIP: None`) and publishes members before they are ready, because the
//! rendezvous happens during startup, before a worker could call itself ready.

use k8s_openapi::api::core::v1::{EnvVar, Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kt_core::{Error, Result};

use super::contract::*;
use super::meta::{base_labels, owner_references};
use super::names::{group_service_name, label_value, member_hostname};
use super::plan::{ActorPod, GroupRank};

/// The torchrun environment of one member.
pub(crate) fn group_env(plan: &ActorPod, group: &GroupRank) -> Vec<EnvVar> {
    let master = format!(
        "{}.{}.{}.svc",
        member_hostname(&group.group, 0),
        group_service_name(&plan.session, &group.group),
        plan.namespace
    );
    let values = [
        group.rank.to_string(),
        group.world_size.to_string(),
        "0".to_string(),
        "1".to_string(),
        master,
        group.master_port.to_string(),
    ];
    ENV_TORCHRUN
        .iter()
        .zip(values)
        .map(|(name, value)| EnvVar {
            name: (*name).to_string(),
            value: Some(value),
            value_from: None,
        })
        .collect()
}

/// Checks a member's rank against its group's size.
pub(crate) fn check_rank(group: &GroupRank) -> Result<()> {
    if group.world_size == 0 || group.rank >= group.world_size {
        return Err(Error::invalid_options(format!(
            "group '{}': rank {} is outside a group of {}; ranks run from 0 to size - 1",
            group.group, group.rank, group.world_size
        )));
    }
    Ok(())
}

/// The headless Service of the group `plan` is a member of; it belongs to the same owner.
pub fn group_service(plan: &ActorPod) -> Result<Service> {
    let Some(group) = &plan.group else {
        return Err(Error::invalid_options(format!(
            "actor '{}' is not a group member, so it has no group Service",
            plan.actor_name
        )));
    };
    check_rank(group)?;
    let mut labels = base_labels(&plan.session, "actor-group");
    labels.insert(LABEL_GROUP.into(), label_value(&group.group));
    let selector = [
        (LABEL_SESSION.to_string(), plan.session.to_string()),
        (LABEL_GROUP.to_string(), label_value(&group.group)),
    ]
    .into();
    let port = |name: &str, port: u16, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port: i32::from(port),
        protocol: Some(protocol.to_string()),
        ..ServicePort::default()
    };
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(group_service_name(&plan.session, &group.group)),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels),
            owner_references: owner_references(&plan.owner),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(vec![
                port(PORT_NAME, plan.port, "UDP"),
                port("torch-master", group.master_port, "TCP"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// A whole group from one template: the member plans (ranks `0..world_size`, named
/// `<group>-<rank>`), their pods and the headless Service. `template.group` is replaced.
pub fn group_manifests(
    template: &ActorPod,
    group: &str,
    world_size: usize,
    master_port: u16,
) -> Result<(Service, Vec<Pod>)> {
    let members: Vec<ActorPod> = (0..world_size)
        .map(|rank| ActorPod {
            actor_name: format!("{group}-{rank}"),
            group: Some(GroupRank {
                group: group.to_string(),
                rank,
                world_size,
                master_port,
            }),
            ..template.clone()
        })
        .collect();
    let Some(first) = members.first() else {
        return Err(Error::invalid_options(format!(
            "group '{group}' has no members; ask for at least one"
        )));
    };
    let service = group_service(first)?;
    let pods = members
        .iter()
        .map(super::actor_pod)
        .collect::<Result<Vec<_>>>()?;
    Ok((service, pods))
}
