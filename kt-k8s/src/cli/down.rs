//! `kt down`: deletes kt sessions. A session's root ConfigMap (`kt-session-<id>`) owns its
//! actors' pods, worker Secrets and group Services, so deleting the root is enough: the
//! garbage collector deletes the rest. That also cleans up after a driver that crashed
//! without tearing its session down. Detached actors belong to no session and survive;
//! `--all` deletes them too.

use std::io::Write;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams};

use super::find::{self, list_actor_pods};
use super::kill::delete_actor;
use super::{CliError, DownArgs, Target};
use crate::manifest::{LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY};

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.uid == uid)
}

/// `kt down [--session S] [--all]`.
pub async fn down(
    target: &Target,
    args: &DownArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let session = args.session.as_deref();
    find::check_session(session)?;
    let roots: Api<ConfigMap> = Api::namespaced(target.client.clone(), &target.namespace);
    let mut selector = format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}=session");
    if let Some(session) = session {
        selector.push_str(&format!(",{LABEL_SESSION}={session}"));
    }
    let found = roots
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| CliError::api("listing kt's session roots", target.place(), e))?
        .items;
    let pods = list_actor_pods(target, session).await?;
    let services: Api<Service> = Api::namespaced(target.client.clone(), &target.namespace);
    let mut deleted_any = false;

    for root in &found {
        let name = root.metadata.name.clone().unwrap_or_default();
        let uid = root.meta().uid.clone().unwrap_or_default();
        // Listed before the delete, to say what the garbage collector will take.
        let mut owned: Vec<String> = Vec::new();
        for pod in pods.iter().filter(|p| owned_by(&p.metadata, &uid)) {
            owned.push(format!("pod/{}", find::pod_name(pod)));
            owned.push(format!(
                "secret/{}",
                crate::manifest::worker_secret_of_pod(find::pod_name(pod))
            ));
        }
        let root_session = root
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SESSION))
            .cloned()
            .unwrap_or_default();
        let group_services = services
            .list(&ListParams::default().labels(&format!(
                "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_SESSION}={root_session}"
            )))
            .await
            .map_err(|e| CliError::api("listing the session's Services", target.place(), e))?;
        owned.extend(
            group_services
                .items
                .iter()
                .filter(|s| owned_by(&s.metadata, &uid))
                .map(|s| format!("service/{}", s.metadata.name.as_deref().unwrap_or_default())),
        );
        // Background propagation: the root goes now, its dependents right after; the
        // command need not wait for every pod's grace period.
        match roots.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => {
                return Err(CliError::api(
                    format!("deleting session root '{name}'"),
                    target.place(),
                    e,
                ));
            }
        }
        deleted_any = true;
        if owned.is_empty() {
            writeln!(out, "deleted configmap/{name} (it owned nothing)")?;
        } else {
            writeln!(
                out,
                "deleted configmap/{name}; the garbage collector deletes what it owns: {}",
                owned.join(", ")
            )?;
        }
    }

    if args.all {
        let detached: Vec<&Pod> = pods
            .iter()
            .filter(|p| find::lifetime(p) == Some("detached"))
            .collect();
        for pod in detached {
            delete_actor(target, pod, out).await?;
            deleted_any = true;
        }
    }

    if !deleted_any {
        let what = match (session, args.all) {
            (Some(s), true) => format!("no session root or detached actor of session '{s}'"),
            (Some(s), false) => format!("no session root of session '{s}'"),
            (None, true) => "no kt session roots or detached actors".to_string(),
            (None, false) => "no kt session roots".to_string(),
        };
        writeln!(out, "Nothing to delete: {what} in {}.", target.place())?;
    }
    // A failed detached actor's pod that its driver kept for inspection belongs to that
    // driver's session, and goes with it.
    let detached_left = pods
        .iter()
        .filter(|p| find::lifetime(p) == Some("detached"))
        .filter(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
        })
        .count();
    if !args.all && detached_left > 0 {
        writeln!(
            out,
            "{detached_left} detached actor(s) remain: `kt down --all` deletes them too."
        )?;
    }
    Ok(())
}
