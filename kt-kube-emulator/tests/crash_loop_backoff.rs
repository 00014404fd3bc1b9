//! A container that keeps failing quickly is restarted with back-off: CrashLoopBackOff,
//! a growing restartCount and the last termination in lastState.

mod common;

use common::{container, shell_pod, wait_pod, waiting_reason};

#[tokio::test]
async fn quick_failures_enter_crash_loop_back_off() {
    let h = common::start().await;
    h.create_pod(shell_pod("crasher", "echo crashing; exit 2", "Always"))
        .await;
    let p = wait_pod(&h.pods(), "crasher", "CrashLoopBackOff", |p| {
        waiting_reason(p) == Some("CrashLoopBackOff")
    })
    .await;
    let c = container(&p).expect("a container status");
    assert!(c.restart_count >= 1, "{c:?}");
    let message = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("back-off ")
            && message.contains("restarting failed container=main pod=crasher_default("),
        "{message}"
    );
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(common::phase(&p), "Running");
    wait_pod(&h.pods(), "crasher", "restarted again", |p| {
        container(p).is_some_and(|c| c.restart_count >= 3)
    })
    .await;
}
