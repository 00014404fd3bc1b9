//! The STATUS, RESTARTS and AGE columns, computed as `kubectl get pods` does so that the
//! two commands never disagree about a pod (kubectl's `printPod` and
//! `duration.HumanDuration` are the reference), with two additions: a pending pod the
//! scheduler rejected shows the scheduler's reason (`Unschedulable`) instead of a bare
//! `Pending`, because "no node fits" is the most common reason an actor never starts;
//! and a failed pod with a pod-level reason (`Evicted`) shows it rather than its killed
//! container's `Error`.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

/// The pod's status as `kubectl get pods` prints it: the phase, or a more telling reason
/// (`Evicted`, `ErrImagePull`, `CrashLoopBackOff`, `OOMKilled`, `Terminating`, ...);
/// `Unschedulable` for a pending pod that fits on no node.
pub fn pod_status(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let mut reason = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_string());
    if let Some(pod_reason) = status
        .and_then(|s| s.reason.as_ref())
        .filter(|r| !r.is_empty())
    {
        reason = pod_reason.clone();
    }
    let conditions: &[PodCondition] = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let condition_true = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };

    if reason == "Pending" {
        // The scheduler's verdict, when it has given up on the pod for now.
        if let Some(scheduled) = conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            && let Some(why) = scheduled.reason.as_ref().filter(|r| !r.is_empty())
        {
            reason = why.clone();
        }
    }

    let init_statuses: &[ContainerStatus] = status
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let init_count = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map_or(0, Vec::len);
    let mut initializing = false;
    for (i, container) in init_statuses.iter().enumerate() {
        let state = container.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let waiting = state.and_then(|s| s.waiting.as_ref());
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = terminated {
            match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            }
        } else if let Some(r) = waiting
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_count}")
        };
        break;
    }

    if !initializing || condition_true("Initialized") {
        let mut has_running = false;
        let statuses: &[ContainerStatus] = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        for container in statuses.iter().rev() {
            let state = container.state.as_ref();
            let waiting = state
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_ref())
                .filter(|r| !r.is_empty());
            let terminated = state.and_then(|s| s.terminated.as_ref());
            if let Some(w) = waiting {
                reason = w.clone();
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if container.ready && state.is_some_and(|s| s.running.is_some()) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true("Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    // kt's second addition: a pod the kubelet failed as a whole (`Evicted`, a deadline)
    // says why its containers died; their own reason (`Error`, exit 143) only repeats
    // that they were killed, so the pod's reason wins where kubectl shows the container's.
    if let Some(pod_reason) = status
        .filter(|s| s.phase.as_deref() == Some("Failed"))
        .and_then(|s| s.reason.as_ref())
        .filter(|r| !r.is_empty())
    {
        reason = pod_reason.clone();
    }

    if pod.metadata.deletion_timestamp.is_some() {
        reason = if status.and_then(|s| s.reason.as_deref()) == Some("NodeLost") {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    reason
}

/// Restarts of the pod's containers, summed (kubectl's RESTARTS without the "(5m ago)").
pub(crate) fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |statuses| statuses.iter().map(|c| c.restart_count).sum())
}

/// Seconds since the pod was created, when it says.
pub(crate) fn age_seconds(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> Option<i64> {
    let created = pod.metadata.creation_timestamp.as_ref()?;
    Some(now.as_second() - created.0.as_second())
}

/// A duration in kubectl's compact form (`5s`, `3m20s`, `17m`, `2h30m`, `10h`, `4d6h`,
/// `30d`, `2y40d`): precise while small, coarser as it grows. A time a little in the
/// future (clock skew of up to a second) is `0s`; further is `<invalid>`.
pub fn format_age(seconds: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / MINUTE;
    if minutes < 10 {
        let s = seconds % MINUTE;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = seconds / DAY;
    if hours < 8 * 24 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if seconds < 2 * YEAR {
        return format!("{days}d");
    }
    let years = seconds / YEAR;
    if seconds < 8 * YEAR {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn age_is_kubectls_compact_form() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (17 * 60 + 5, "17m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (2 * 3600 + 30 * 60, "150m"), // under 3 hours, minutes
            (5 * 3600 + 30 * 60, "5h30m"),
            (10 * 3600, "10h"),
            (47 * 3600, "47h"),
            (4 * 86400, "4d"),
            (4 * 86400 + 6 * 3600, "4d6h"),
            (30 * 86400, "30d"),
            (2 * 365 * 86400 + 40 * 86400, "2y40d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(format_age(seconds), want, "{seconds}s");
        }
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status}))
            .expect("a valid pod")
    }

    fn container(state: serde_json::Value, ready: bool) -> serde_json::Value {
        json!({"name": "actor", "image": "i", "imageID": "", "ready": ready, "restartCount": 2, "state": state})
    }

    #[test]
    fn status_is_the_phase_or_a_more_telling_reason() {
        let running = pod(json!({"phase": "Running",
            "containerStatuses": [container(json!({"running": {}}), true)]}));
        assert_eq!(pod_status(&running), "Running");
        assert_eq!(restarts(&running), 2);

        let unschedulable = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available"}]}));
        assert_eq!(pod_status(&unschedulable), "Unschedulable");
        assert_eq!(pod_status(&pod(json!({"phase": "Pending"}))), "Pending");

        let pulling = pod(json!({"phase": "Pending",
            "containerStatuses": [container(json!({"waiting": {"reason": "ErrImagePull"}}), false)]}));
        assert_eq!(pod_status(&pulling), "ErrImagePull");

        let oom = pod(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), false)]}));
        assert_eq!(pod_status(&oom), "OOMKilled");

        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory.",
            "containerStatuses": [container(json!({"terminated": {"exitCode": 143, "signal": 15, "reason": "Error"}}), false)]}));
        assert_eq!(pod_status(&evicted), "Evicted");

        let signalled = pod(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 143, "signal": 15}}), false)]}));
        assert_eq!(pod_status(&signalled), "Signal:15");
        let exited = pod(json!({"phase": "Failed", "containerStatuses": [container(
            json!({"terminated": {"exitCode": 3}}), false)]}));
        assert_eq!(pod_status(&exited), "ExitCode:3");

        let init = pod(
            json!({"phase": "Pending", "initContainerStatuses": [container(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}), false)]}),
        );
        assert_eq!(pod_status(&init), "Init:CrashLoopBackOff");

        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(pod_status(&deleting), "Terminating");
    }
}
