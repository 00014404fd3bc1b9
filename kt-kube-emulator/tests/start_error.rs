//! A container whose command cannot be started terminates with `StartError`, exit code
//! 128 and the runtime's message naming the command, as containerd reports it.

mod common;

use common::{terminated, wait_pod};
use serde_json::json;

#[tokio::test]
async fn a_missing_command_is_a_start_error_that_names_it() {
    let h = common::start().await;
    h.create_pod(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-binary"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "app:1",
            "command": ["/usr/local/bin/kt-no-such-binary", "--serve"],
        }]},
    }))
    .await;
    let p = wait_pod(&h.pods(), "no-binary", "terminated", |p| {
        terminated(p).is_some()
    })
    .await;
    let t = terminated(&p).expect("terminated");
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError"))
    );
    let message = t.message.clone().unwrap_or_default();
    assert!(
        message.contains("failed to start \"/usr/local/bin/kt-no-such-binary\"")
            && message.contains("No such file or directory"),
        "{message}"
    );
    assert_eq!(common::phase(&p), "Failed");
}
