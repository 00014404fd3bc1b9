//! `kt logs`: an actor's output, from its pod's `actor` container.
//!
//! A group's name prints every member's lines, each prefixed `[rank N] ` (one member
//! after the other; with `-f`, interleaved as they arrive). A member alone is named
//! `GROUP-RANK`, the name kt gives it. `-f` ends when every selected pod's container
//! has ended (the API server closes the stream), or on Ctrl-C in the binary.

use std::io::Write;

use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::find::{self, select};
use super::{CliError, LogsArgs, Target};
use crate::manifest::CONTAINER_NAME;

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
