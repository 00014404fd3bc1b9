//! `kt kill`: deletes an actor's pod and its worker Secret; for a group's name, every
//! member's and the group's headless Service. Deleting the pod is what stops the actor
//! (SIGTERM, then SIGKILL after the grace period); the driver, if it still runs, sees
//! the pod's deletion and reports `ActorDied` with cause `PodDeleted`.

use std::io::Write;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams};

use super::find::{self, select};
use super::{CliError, KillArgs, Target};
use crate::manifest::{LABEL_COMPONENT, LABEL_GROUP, LABEL_MANAGED_BY, LABEL_SESSION, MANAGED_BY};

/// Deletes `name`; `Ok(false)` when it was already gone (someone else was faster).
pub(crate) async fn delete_named<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    target: &Target,
) -> Result<bool, CliError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(CliError::api(
            format!("deleting {kind} '{name}'"),
            target.place(),
            e,
        )),
    }
}

/// Deletes an actor pod and its worker Secret (`<pod>-worker`), saying what went.
pub(crate) async fn delete_actor(
    target: &Target,
    pod: &Pod,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let pods: Api<Pod> = Api::namespaced(target.client.clone(), &target.namespace);
    let secrets: Api<Secret> = Api::namespaced(target.client.clone(), &target.namespace);
    let name = find::pod_name(pod);
    if delete_named(&pods, "pod", name, target).await? {
        writeln!(out, "deleted pod/{name}")?;
    }
    let secret = crate::manifest::worker_secret_of_pod(name);
    if delete_named(&secrets, "secret", &secret, target).await? {
        writeln!(out, "deleted secret/{secret}")?;
    }
    Ok(())
}

/// `kt kill NAME`.
pub async fn kill(
    target: &Target,
    args: &KillArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let selection = select(target, &args.name, args.session.as_deref()).await?;
    for pod in &selection.pods {
        delete_actor(target, pod, out).await?;
    }
    if let Some((group, session)) = &selection.group {
        // The Service is found by its labels: its name holds the group's original name,
        // which the members' labels only keep sanitized.
        let services: Api<Service> = Api::namespaced(target.client.clone(), &target.namespace);
        let selector = format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}=actor-group,\
             {LABEL_GROUP}={group},{LABEL_SESSION}={session}"
        );
        let list = services
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| CliError::api("listing the group's Service", target.place(), e))?;
        for service in list.items {
            let name = service.metadata.name.unwrap_or_default();
            if delete_named(&services, "service", &name, target).await? {
                writeln!(out, "deleted service/{name}")?;
            }
        }
    }
    Ok(())
}
