//! `kt logs`: an actor's output, from its pod's `actor` container.
//!
//! A group's name prints every member's lines, each prefixed `[rank N] ` (one member
//! after the other; with `-f`, interleaved as they arrive). A member alone is named
//! `GROUP-RANK`, the name kt gives it. `-f` ends when every selected pod's container
//! has ended (the API server closes the stream), or on Ctrl-C in the binary.
//!
//! A container that has not started has no logs yet: without `-f` that is an error naming
//! the pod's status (`Unschedulable`, `ErrImagePull`, ...); with `-f` the command waits
//! for it to start, like `kubectl logs -f`, for at most [`START_TIMEOUT`].

use std::io::Write;
use std::time::Duration;

use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::wait::await_condition;

use super::find::{self, select};
use super::status::pod_status;
use super::{CliError, LogsArgs, Target};
use crate::manifest::CONTAINER_NAME;

/// How long `kt logs -f` waits for a container to start (kubectl's `--pod-running-timeout`
/// default): long enough for an image pull, short enough that a pod that will never
/// start (no node fits it) does not hang a script.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the actor's container has run (so it has logs); a pod that is gone has none.
fn started(pod: Option<&Pod>) -> bool {
    let Some(pod) = pod else { return true };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    statuses.iter().any(|c| {
        c.name == CONTAINER_NAME
            && (c
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                || c.last_state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some()))
    })
}

/// Waits (with `-f`) or fails (without) when the pod's container has not started.
async fn until_started(
    api: &Api<Pod>,
    pod: &Pod,
    follow: bool,
    target: &Target,
) -> Result<(), CliError> {
    if started(Some(pod)) {
        return Ok(());
    }
    let name = find::pod_name(pod);
    let not_started = |status: String, waited: &str| {
        CliError::Invalid(format!(
            "pod '{name}' in {} has not started{waited} (status {status}), so it has no logs \
             yet; `kt ps` shows why{}",
            target.place(),
            if follow {
                ""
            } else {
                ", `kt logs -f` waits for it"
            }
        ))
    };
    if !follow {
        return Err(not_started(pod_status(pod), ""));
    }
    let waited = tokio::time::timeout(START_TIMEOUT, await_condition(api.clone(), name, started));
    match waited.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CliError::Invalid(format!(
            "waiting for pod '{name}' in {} to start failed: {e}",
            target.place()
        ))),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            let status = now.as_ref().map_or_else(|| "gone".to_string(), pod_status);
            Err(not_started(
                status,
                &format!(" within {}s", START_TIMEOUT.as_secs()),
            ))
        }
    }
}

/// `kt logs NAME [-f] [--tail N] [--previous]`.
pub async fn logs(
    target: &Target,
    args: &LogsArgs,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let selection = select(target, &args.name, args.session.as_deref()).await?;
    let api: Api<Pod> = Api::namespaced(target.client.clone(), &target.namespace);
    let params = LogParams {
        container: Some(CONTAINER_NAME.to_string()),
        follow: args.follow,
        tail_lines: args.tail,
        previous: args.previous,
        ..LogParams::default()
    };
    let prefixed = selection.group.is_some();
    let prefix = |pod: &Pod| match find::group_rank(pod) {
        Some((_, rank)) if prefixed => format!("[rank {rank}] "),
        _ => String::new(),
    };
    let failed = |pod: &Pod, e| {
        CliError::api(
            format!("reading the logs of pod '{}'", find::pod_name(pod)),
            target.place(),
            e,
        )
    };

    if !args.previous {
        for pod in &selection.pods {
            until_started(&api, pod, args.follow, target).await?;
        }
    }

    if !args.follow {
        for pod in &selection.pods {
            let text = api
                .logs(find::pod_name(pod), &params)
                .await
                .map_err(|e| failed(pod, e))?;
            let prefix = prefix(pod);
            for line in text.lines() {
                writeln!(out, "{prefix}{line}")?;
            }
        }
        return Ok(());
    }

    let mut streams = Vec::with_capacity(selection.pods.len());
    for pod in &selection.pods {
        let reader = api
            .log_stream(find::pod_name(pod), &params)
            .await
            .map_err(|e| failed(pod, e))?;
        let prefix = prefix(pod);
        let name = find::pod_name(pod).to_string();
        streams.push(
            reader
                .lines()
                .map_ok(move |line| format!("{prefix}{line}"))
                .map_err(move |e| (name.clone(), e))
                .boxed(),
        );
    }
    let mut merged = futures_util::stream::select_all(streams);
    while let Some(line) = merged.next().await {
        match line {
            Ok(line) => {
                writeln!(out, "{line}")?;
                // Followed lines are for a human watching: show each as it comes.
                out.flush()?;
            }
            Err((pod, e)) => {
                return Err(CliError::Api {
                    action: format!("following the logs of pod '{pod}'"),
                    place: target.place(),
                    message: e.to_string(),
                    hint: "\n(the connection to the API server broke; run the command again)"
                        .to_string(),
                });
            }
        }
    }
    Ok(())
}
