//! A missing image: the container waits with ErrImagePull, then ImagePullBackOff, and
//! starts once the image can be pulled.

mod common;

use common::{phase, shell_pod, wait_pod, waiting_reason};

#[tokio::test]
async fn err_image_pull_then_back_off_then_recovery() {
    let h = common::start().await;
    let image = "registry.example/kt/missing:1.0";
    h.emulator.fail_image_pull(image);
    let mut pod = shell_pod("pull", "exec sleep 100", "Always");
    pod["spec"]["containers"][0]["image"] = serde_json::json!(image);
    h.create_pod(pod).await;
    let first = wait_pod(&h.pods(), "pull", "ErrImagePull", |p| {
        waiting_reason(p) == Some("ErrImagePull")
    })
    .await;
    let message = common::container(&first)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(image) && message.contains("not found"),
        "{message}"
    );
    assert_eq!(phase(&first), "Pending");
    let backoff = wait_pod(&h.pods(), "pull", "ImagePullBackOff", |p| {
        waiting_reason(p) == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(phase(&backoff), "Pending");
    h.emulator.allow_image_pull(image);
    wait_pod(&h.pods(), "pull", "Running", |p| phase(p) == "Running").await;
}
