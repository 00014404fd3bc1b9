//! Finding actors by the name a user types: an actor's name (as given at spawn, from the
//! `kt.dev/actor-name` annotation), or a group's name, which selects every member.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{CliError, Target};
use crate::manifest::{
    ANNOTATION_ACTOR_NAME, ANNOTATION_TYPE_NAME, LABEL_ACTOR, LABEL_COMPONENT, LABEL_GROUP,
    LABEL_MANAGED_BY, LABEL_RANK, LABEL_SESSION, MANAGED_BY, label_value,
};

/// Checks a `--session` value before it goes into a label selector, where a stray `,` or
/// `=` would select something else than asked.
pub(crate) fn check_session(session: Option<&str>) -> Result<(), CliError> {
    if let Some(session) = session {
        crate::manifest::SessionId::new(session)?;
    }
    Ok(())
}

/// The label selector of kt's actor pods, optionally of one session.
pub(crate) fn actor_selector(session: Option<&str>) -> String {
    let mut selector = format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}=actor");
    if let Some(session) = session {
        selector.push_str(&format!(",{LABEL_SESSION}={session}"));
    }
    selector
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The actor's full name: the annotation, else the (sanitized) label, else the pod's name.
pub(crate) fn actor_name(pod: &Pod) -> &str {
    annotation(pod, ANNOTATION_ACTOR_NAME)
        .or_else(|| label(pod, LABEL_ACTOR))
        .or(pod.metadata.name.as_deref())
        .unwrap_or_default()
}

/// The actor's registered type name, when annotated.
pub(crate) fn type_name(pod: &Pod) -> Option<&str> {
    annotation(pod, ANNOTATION_TYPE_NAME)
}

/// The pod's session.
pub(crate) fn session(pod: &Pod) -> &str {
    label(pod, LABEL_SESSION).unwrap_or_default()
}

/// The group (label value) and rank of a group member.
pub(crate) fn group_rank(pod: &Pod) -> Option<(&str, usize)> {
    let group = label(pod, LABEL_GROUP)?;
    let rank = label(pod, LABEL_RANK)?.parse().ok()?;
    Some((group, rank))
}

/// `kt.dev/lifetime`.
pub(crate) fn lifetime(pod: &Pod) -> Option<&str> {
    annotation(pod, crate::manifest::ANNOTATION_LIFETIME)
}

/// The pod's name.
pub(crate) fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Lists kt's actor pods in the target's namespace.
pub(crate) async fn list_actor_pods(
    target: &Target,
    session: Option<&str>,
) -> Result<Vec<Pod>, CliError> {
    check_session(session)?;
    let pods: Api<Pod> = Api::namespaced(target.client.clone(), &target.namespace);
    let params = ListParams::default().labels(&actor_selector(session));
    let list = pods
        .list(&params)
        .await
        .map_err(|e| CliError::api("listing kt's actor pods", target.place(), e))?;
    Ok(list.items)
}

/// What a name selected.
#[derive(Debug)]
pub(crate) struct Selection {
    /// The pods: one for an actor, every member (by rank) for a group.
    pub pods: Vec<Pod>,
    /// The group's label value and session, when the name was a group's.
    pub group: Option<(String, String)>,
}

/// Finds the actor or group `name` (optionally of one session) in the target namespace.
pub(crate) async fn select(
    target: &Target,
    name: &str,
    session: Option<&str>,
) -> Result<Selection, CliError> {
    let all = list_actor_pods(target, session).await?;
    let wanted_label = label_value(name);
    let mut pods: Vec<Pod> = all
        .iter()
        .filter(|p| match annotation(p, ANNOTATION_ACTOR_NAME) {
            Some(full) => full == name,
            None => label(p, LABEL_ACTOR) == Some(wanted_label.as_str()),
        })
        .cloned()
        .collect();
    let mut group = None;
    if pods.is_empty() {
        pods = all
            .iter()
            .filter(|p| label(p, LABEL_GROUP) == Some(wanted_label.as_str()))
            .cloned()
            .collect();
        pods.sort_by_key(|p| group_rank(p).map(|(_, rank)| rank));
        if let Some(first) = pods.first() {
            group = Some((wanted_label.clone(), session_of(first)));
        }
    }
    if pods.is_empty() {
        return Err(CliError::NotFound {
            name: name.to_string(),
            place: target.place(),
            close: close_names(name, &all),
        });
    }
    let mut sessions: Vec<String> = pods.iter().map(session_of).collect();
    sessions.sort();
    sessions.dedup();
    if sessions.len() > 1 {
        return Err(CliError::Ambiguous {
            name: name.to_string(),
            place: target.place(),
            sessions,
        });
    }
    Ok(Selection { pods, group })
}

fn session_of(pod: &Pod) -> String {
    session(pod).to_string()
}

/// Actor and group names close to `name` (typos, a missing rank), best first.
fn close_names(name: &str, pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<&str> = pods
        .iter()
        .flat_map(|p| [Some(actor_name(p)), group_rank(p).map(|(g, _)| g)])
        .flatten()
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut scored: Vec<(f64, &str)> = names
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(name, candidate);
            // A prefix is close whatever its length: `train` for `trainers-3`.
            let score = if candidate.starts_with(name) || name.starts_with(candidate) {
                score.max(0.9)
            } else {
                score
            };
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(5)
        .map(|(_, n)| n.to_string())
        .collect()
}
