//! An injected preemption: the pod is marked DisruptionTarget (PreemptionByScheduler) and
//! then deleted; a watcher sees both.

mod common;

use common::{phase, shell_pod, wait_pod};
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{WatchEvent, WatchParams};

#[tokio::test]
async fn preemption_marks_then_deletes() {
    let h = common::start().await;
    h.create_pod(shell_pod("low-prio", "exec sleep 100", "Always"))
        .await;
    let pod = wait_pod(&h.pods(), "low-prio", "Running", |p| phase(p) == "Running").await;
    let rv = pod.metadata.resource_version.expect("rv");
    let params = WatchParams::default().fields("metadata.name=low-prio");
    let mut events = h.pods().watch(&params, &rv).await.expect("watch").boxed();
    h.emulator
        .preempt("default", "low-prio")
        .expect("the pod runs");
    let mut marked = false;
    loop {
        match tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok")
        {
            Some(WatchEvent::Modified(p)) => {
                marked |= common::condition(&p, "DisruptionTarget").is_some_and(|c| {
                    c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
                });
            }
            Some(WatchEvent::Deleted(_)) => break,
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(marked, "no DisruptionTarget before the deletion");
}
