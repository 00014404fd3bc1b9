//! `kt manifest`: the YAML kt would create for an actor or a group, built by the same
//! functions the placement uses ([`crate::manifest`]), for review or GitOps. Offline: no
//! cluster is contacted.
//!
//! Two things only exist at spawn time, and the output says so in comments:
//! - the worker Secret's key material (a fresh TLS identity per worker): the printed
//!   Secret has the right name, labels and keys, with empty values;
//! - the session root's uid, which an owner reference needs: owned objects get their
//!   owner reference only with `--session-uid UID` (of a root that exists). A reference
//!   to a uid that does not exist would make the garbage collector delete the objects
//!   right after they are applied; without one they are not collected with the session,
//!   so remove them with `kt kill NAME`.

use std::io::Write;

use kt_core::{Compute, TaintEffect, Toleration};

use super::{CliError, ManifestArgs, Placement};
use crate::manifest::{
    ActorPod, GroupRank, Manifest, Owner, PlacementGroup, PlacementStrategy, SessionId,
    SessionRoot, WorkerFiles, actor_pod, group_manifests, session_root, session_root_name,
    short_type_name, to_yaml, worker_secret,
};

fn invalid(message: String) -> CliError {
    CliError::Invalid(message)
}

fn key_value<'a>(flag: &str, raw: &'a str) -> Result<(&'a str, &'a str), CliError> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| invalid(format!("{flag} expects KEY=VALUE, got '{raw}'")))
}

/// `KEY[=VALUE][:EFFECT]`.
fn parse_toleration(raw: &str) -> Result<Toleration, CliError> {
    let (selector, effect) = match raw.rsplit_once(':') {
        Some((selector, effect)) => {
            let effect = match effect {
                "NoSchedule" => TaintEffect::NoSchedule,
                "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                "NoExecute" => TaintEffect::NoExecute,
                other => {
                    return Err(invalid(format!(
                        "--toleration '{raw}': unknown effect '{other}'; use NoSchedule, \
                         PreferNoSchedule or NoExecute (or leave ':EFFECT' out for any effect)"
                    )));
                }
            };
            (selector, Some(effect))
        }
        None => (raw, None),
    };
    let toleration = match selector.split_once('=') {
        Some((key, value)) => Toleration::equal(key, value),
        None => Toleration::exists(selector),
    };
    Ok(match effect {
        Some(effect) => toleration.effect(effect),
        None => toleration,
    })
}

fn compute(args: &ManifestArgs) -> Result<Compute, CliError> {
    let mut compute = Compute::new();
    if let Some(cpus) = args.cpus {
        compute = compute.cpus(cpus);
    }
    if let Some(gpus) = args.gpus {
        compute = compute.gpus(gpus);
    }
    if let Some(memory) = &args.memory {
        compute = compute.memory(memory);
    }
    for raw in &args.env {
        let (k, v) = key_value("--env", raw)?;
        compute = compute.env(k, v);
    }
    for raw in &args.node_selector {
        let (k, v) = key_value("--node-selector", raw)?;
        compute = compute.node_selector(k, v);
    }
    for raw in &args.toleration {
        compute = compute.toleration(parse_toleration(raw)?);
    }
    if let Some(class) = &args.priority_class {
        compute = compute.priority_class(class);
    }
    if let Some(queue) = &args.queue {
        compute = compute.queue(queue);
    }
    if let Some(path) = &args.patch {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("--patch: cannot read {}: {e}", path.display())))?;
        let patch: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("--patch: {} is not JSON: {e}", path.display())))?;
        compute = match patch {
            serde_json::Value::Object(_) => compute.pod_patch(patch),
            serde_json::Value::Array(_) => compute.pod_json_patch(patch),
            _ => {
                return Err(invalid(format!(
                    "--patch: {} must hold an object (a merge patch, RFC 7386) or an array \
                     (a JSON patch, RFC 6902)",
                    path.display()
                )));
            }
        };
    }
    Ok(compute)
}

/// `kt manifest ...`: writes the objects as multi-document YAML to `out`; `namespace`
/// is `-n`'s value (`default` without it: the output must not depend on a kubeconfig).
pub fn manifest(
    args: &ManifestArgs,
    namespace: &str,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    if args.command.is_empty() {
        return Err(invalid(
            "kt manifest needs the command that starts your binary inside the image: add \
             --command /path/in/image [ARG]... as the last flag"
                .into(),
        ));
    }
    let session = SessionId::new(args.session.as_str())?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| short_type_name(&args.type_name).to_ascii_lowercase());
    let root_name = session_root_name(&session);
    let owner = if args.detached {
        Owner::Detached
    } else {
        Owner::Session(SessionRoot {
            name: root_name.clone(),
            uid: args.session_uid.clone().unwrap_or_default(),
        })
    };
    let placement = args.placement.map(|p| PlacementGroup {
        name: name.clone(),
        strategy: match p {
            Placement::Pack => PlacementStrategy::Pack,
            Placement::Spread => PlacementStrategy::Spread,
            Placement::StrictPack => PlacementStrategy::StrictPack,
            Placement::StrictSpread => PlacementStrategy::StrictSpread,
        },
    });
    let plan = ActorPod {
        session: session.clone(),
        namespace: namespace.to_string(),
        actor_name: name.clone(),
        type_name: args.type_name.clone(),
        image: args.image.clone(),
        command: args.command.clone(),
        compute: compute(args)?,
        port: args.port,
        group: None,
        placement,
        owner: owner.clone(),
    };

    // (comment, object) in the order to apply them: the owner before what it owns, each
    // Secret before the pod that mounts it.
    let mut objects: Vec<(Option<String>, Manifest)> = Vec::new();
    let secret_note = |pod: &str| {
        Some(format!(
            "PLACEHOLDER: every key is empty here; kt writes {pod}'s TLS identity and\n# \
             worker config into this Secret when it spawns the actor."
        ))
    };
    match args.replicas {
        None => {
            objects.push((
                secret_note(&name),
                worker_secret(&plan, &WorkerFiles::default()).into(),
            ));
            objects.push((None, actor_pod(&plan)?.into()));
        }
        Some(replicas) => {
            let (service, pods) = group_manifests(&plan, &name, replicas, args.master_port)?;
            objects.push((None, service.into()));
            // The members' plans as `group_manifests` makes them, for their Secrets.
            for (rank, pod) in pods.into_iter().enumerate() {
                let member = ActorPod {
                    actor_name: format!("{name}-{rank}"),
                    group: Some(GroupRank {
                        group: name.clone(),
                        rank,
                        world_size: replicas,
                        master_port: args.master_port,
                    }),
                    ..plan.clone()
                };
                let secret = worker_secret(&member, &WorkerFiles::default());
                objects.push((secret_note(&member.actor_name), secret.into()));
                objects.push((None, pod.into()));
            }
        }
    }
    if args.session_uid.is_none() {
        for (_, object) in &mut objects {
            strip_owner(object);
        }
    }

    let mut header = vec![format!(
        "kt manifest: {} '{name}' ({}) of session '{session}' in namespace '{namespace}'.",
        if args.replicas.is_some() {
            "group"
        } else {
            "actor"
        },
        args.type_name
    )];
    match (&owner, &args.session_uid) {
        (Owner::Detached, _) => {
            header.push("Detached: owned by no session; `kt kill NAME` removes it.".into())
        }
        (Owner::Session(_), Some(_)) => header.push(format!(
            "Owned by configmap/{root_name} (listed first): `kt down --session {session}` \
             removes it all."
        )),
        (Owner::Session(_), None) => header.extend([
            format!("No owner references: they need the uid of configmap/{root_name},"),
            "which exists only once it is created (--session-uid UID adds them).".into(),
            format!("Without them these objects outlive `kt down`: `kt kill {name}` removes them."),
        ]),
    }
    let mut text = String::new();
    for line in &header {
        text.push_str(&format!("# {line}\n"));
    }
    if matches!(owner, Owner::Session(_)) {
        objects.insert(0, (None, session_root(&session, namespace).into()));
    }
    for (i, (comment, object)) in objects.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        if let Some(comment) = comment {
            text.push_str(&format!("# {comment}\n"));
        }
        let yaml = to_yaml(std::slice::from_ref(object))?;
        text.push_str(yaml.trim_start_matches("---\n"));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    out.write_all(text.as_bytes())?;
    Ok(())
}

fn strip_owner(object: &mut Manifest) {
    let meta = match object {
        Manifest::Pod(o) => &mut o.metadata,
        Manifest::Service(o) => &mut o.metadata,
        Manifest::Secret(o) => &mut o.metadata,
        Manifest::ConfigMap(o) => &mut o.metadata,
    };
    meta.owner_references = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_parse_key_value_and_effect() {
        let t = parse_toleration("nvidia.com/gpu:NoSchedule").expect("valid");
        assert_eq!(
            t,
            Toleration::exists("nvidia.com/gpu").effect(TaintEffect::NoSchedule)
        );
        let t = parse_toleration("dedicated=ml:NoExecute").expect("valid");
        assert_eq!(
            t,
            Toleration::equal("dedicated", "ml").effect(TaintEffect::NoExecute)
        );
        assert_eq!(
            parse_toleration("spot").expect("valid"),
            Toleration::exists("spot")
        );
        let err = parse_toleration("a=b:Never").expect_err("bad effect");
        assert!(err.to_string().contains("NoSchedule"), "{err}");
    }

    #[test]
    fn key_values_need_an_equals_sign() {
        assert_eq!(key_value("--env", "A=b=c").ok(), Some(("A", "b=c")));
        assert!(key_value("--env", "A").is_err());
        assert!(key_value("--env", "=x").is_err());
    }
}
