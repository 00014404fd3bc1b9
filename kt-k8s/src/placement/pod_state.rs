//! What a pod's status means for its actor: still starting (and why), ready at an
//! address, or dead with a structured cause taken from Kubernetes' own reasons — never
//! parsed from free text.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use kt_core::DeathCause;

/// Where a pod stands, as the placement needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not running yet; `stage` says what it waits for (for progress displays).
    Starting {
        /// A short word: `scheduling`, `pulling image`, `creating`, `starting`.
        stage: &'static str,
    },
    /// Waiting for room on a node: the scheduler's message. Whether that is a failure
    /// depends on the spawn (`wait_for_resources`).
    Unschedulable {
        /// The scheduler's message.
        message: String,
    },
    /// Running and ready, reachable at this IP.
    Ready {
        /// The pod's IP.
        ip: String,
    },
    /// Dead, or as good as dead (a pull that failed, a crash loop).
    Dead(DeathCause),
}

/// Image pull reasons that end a spawn: a typo in the image name does not fix itself,
/// and a registry that refuses now is reported now rather than after a long back-off.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Container reasons that mean its process could not be created or started: in a
/// terminated state (`StartError` from containerd, `ContainerCannotRun` from Docker) or
/// a waiting one (the kubelet's `CreateContainerError`, `CreateContainerConfigError`,
/// `RunContainerError`). A missing command or a bad configuration does not fix itself.
const START_FAILURES: &[&str] = &[
    "StartError",
    "ContainerCannotRun",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn container_statuses(pod: &Pod) -> &[ContainerStatus] {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
}

/// Reads a pod's status.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let message = |m: Option<&String>| m.cloned().unwrap_or_default();
    if let Some(disruption) = condition(pod, "DisruptionTarget")
        && disruption.status == "True"
        && disruption.reason.as_deref() == Some("PreemptionByScheduler")
    {
        return PodState::Dead(DeathCause::Preempted {
            message: message(disruption.message.as_ref()),
        });
    }
    if status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        return PodState::Dead(DeathCause::Evicted {
            message: message(status.and_then(|s| s.message.as_ref())),
        });
    }
    // Being deleted (`kubectl delete`, `kt kill`, `kt down`, a controller): that is why its
    // containers end next (SIGTERM, then SIGKILL), not a crash of their own. A preemption
    // (above) deletes the pod too, and keeps its own reason.
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Dead(DeathCause::PodDeleted);
    }
    for container in container_statuses(pod) {
        let state = container.state.as_ref();
        // A container that ended — now, or before a restart by the kubelet (a pod whose
        // restartPolicy is not `Never`; a status written after a quick restart may show
        // the new run already) — ended the worker this driver attached to: the actor is
        // dead, for the reason of that first end, whatever the kubelet does next.
        let ended = state.and_then(|s| s.terminated.as_ref()).or_else(|| {
            container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        });
        if let Some(terminated) = ended {
            return PodState::Dead(match terminated.reason.as_deref() {
                Some("OOMKilled") => DeathCause::OomKilled,
                Some(reason) if START_FAILURES.contains(&reason) => {
                    DeathCause::ContainerStartFailed {
                        reason: reason.to_string(),
                        message: message(terminated.message.as_ref()),
                    }
                }
                _ => match terminated.signal {
                    Some(signal) if signal != 0 => DeathCause::Signaled { signal },
                    _ if terminated.exit_code > 128 => DeathCause::Signaled {
                        signal: terminated.exit_code - 128,
                    },
                    _ => DeathCause::Exited {
                        code: terminated.exit_code,
                    },
                },
            });
        }
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if PULL_FAILURES.contains(&reason) {
                return PodState::Dead(DeathCause::ImagePullFailed {
                    reason: reason.to_string(),
                    message: message(waiting.message.as_ref()),
                });
            }
            if START_FAILURES.contains(&reason) {
                return PodState::Dead(DeathCause::ContainerStartFailed {
                    reason: reason.to_string(),
                    message: message(waiting.message.as_ref()),
                });
            }
            if reason == "CrashLoopBackOff" {
                return PodState::Dead(DeathCause::CrashLoop {
                    message: message(waiting.message.as_ref()),
                });
            }
        }
    }
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Failed") => {
            return PodState::Dead(DeathCause::Exited { code: -1 });
        }
        Some("Succeeded") => return PodState::Dead(DeathCause::Exited { code: 0 }),
        _ => {}
    }
    if let Some(scheduled) = condition(pod, "PodScheduled")
        && scheduled.status == "False"
        && scheduled.reason.as_deref() == Some("Unschedulable")
    {
        return PodState::Unschedulable {
            message: message(scheduled.message.as_ref()),
        };
    }
    let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    let ip = status
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty());
    if let (true, Some(ip)) = (ready, ip) {
        return PodState::Ready { ip };
    }
    let stage = if condition(pod, "PodScheduled").is_none_or(|c| c.status != "True") {
        "scheduling"
    } else {
        let waiting = container_statuses(pod)
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
            .next();
        match waiting {
            Some("ContainerCreating") => "creating",
            Some("PodInitializing") => "initializing",
            Some(_) | None if status.and_then(|s| s.phase.as_deref()) == Some("Running") => {
                "starting"
            }
            _ => "pulling image",
        }
    };
    PodState::Starting { stage }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": status,
        }))
        .expect("a pod")
    }

    #[test]
    fn ready_pods_have_an_address() {
        let p = pod(json!({
            "phase": "Running", "podIP": "10.0.0.7",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        }));
        assert_eq!(
            pod_state(&p),
            PodState::Ready {
                ip: "10.0.0.7".into()
            }
        );
    }

    #[test]
    fn starting_pods_say_what_they_wait_for() {
        let unscheduled = pod(json!({"phase": "Pending"}));
        assert_eq!(
            pod_state(&unscheduled),
            PodState::Starting {
                stage: "scheduling"
            }
        );
        let pulling = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "actor", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}],
        }));
        assert_eq!(
            pod_state(&pulling),
            PodState::Starting { stage: "creating" }
        );
    }

    #[test]
    fn kubernetes_reasons_become_death_causes() {
        let unschedulable = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}],
        }));
        assert_eq!(
            pod_state(&unschedulable),
            PodState::Unschedulable {
                message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into()
            }
        );
        let waiting = |reason: &str| {
            pod(json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "actor", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}],
            }))
        };
        assert_eq!(
            pod_state(&waiting("ImagePullBackOff")),
            PodState::Dead(DeathCause::ImagePullFailed {
                reason: "ImagePullBackOff".into(),
                message: "m".into()
            })
        );
        assert_eq!(
            pod_state(&waiting("CrashLoopBackOff")),
            PodState::Dead(DeathCause::CrashLoop {
                message: "m".into()
            })
        );
        let terminated = |state: serde_json::Value| {
            pod(json!({
                "phase": "Failed",
                "containerStatuses": [{"name": "actor", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": state}}],
            }))
        };
        assert_eq!(
            pod_state(&terminated(json!({"exitCode": 137, "reason": "OOMKilled"}))),
            PodState::Dead(DeathCause::OomKilled)
        );
        assert_eq!(
            pod_state(&terminated(json!({"exitCode": 3, "reason": "Error"}))),
            PodState::Dead(DeathCause::Exited { code: 3 })
        );
        assert_eq!(
            pod_state(&terminated(json!({"exitCode": 137, "reason": "Error"}))),
            PodState::Dead(DeathCause::Signaled { signal: 9 })
        );
        // A command that cannot start keeps Kubernetes' reason and message, not code 128.
        let no_command = "failed to create containerd task: failed to start \"/usr/local/bin/app\": \
                          no such file or directory";
        assert_eq!(
            pod_state(&terminated(json!({"exitCode": 128, "reason": "StartError",
                "message": no_command}))),
            PodState::Dead(DeathCause::ContainerStartFailed {
                reason: "StartError".into(),
                message: no_command.into()
            })
        );
        assert_eq!(
            pod_state(&waiting("CreateContainerConfigError")),
            PodState::Dead(DeathCause::ContainerStartFailed {
                reason: "CreateContainerConfigError".into(),
                message: "m".into()
            })
        );
        // Restarted by the kubelet (restartPolicy Always): running again, or backing off,
        // the first end is the cause.
        let restarted = |state: serde_json::Value| {
            pod(json!({
                "phase": "Running",
                "containerStatuses": [{"name": "actor", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 1, "state": state,
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            }))
        };
        for state in [
            json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}),
        ] {
            assert_eq!(
                pod_state(&restarted(state)),
                PodState::Dead(DeathCause::Exited { code: 1 })
            );
        }
        let evicted =
            pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}));
        assert_eq!(
            pod_state(&evicted),
            PodState::Dead(DeathCause::Evicted {
                message: "low on memory".into()
            })
        );
        // Deleted by someone: the SIGTERM that ends its container is not the cause.
        let mut deleting = terminated(json!({"exitCode": 143, "reason": "Error", "signal": 15}));
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:30Z")).expect("a timestamp"));
        assert_eq!(pod_state(&deleting), PodState::Dead(DeathCause::PodDeleted));
        let preempted = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "PreemptionByScheduler", "message": "by a higher priority pod"}],
        }));
        assert_eq!(
            pod_state(&preempted),
            PodState::Dead(DeathCause::Preempted {
                message: "by a higher priority pod".into()
            })
        );
    }
}
