//! Injected delete failures: the next N deletes of one object answer `500 InternalError`
//! and leave it in place; then deletes work again. Other objects are not affected.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("a ConfigMap")
}

#[tokio::test]
async fn deletes_fail_as_often_as_asked_then_work() {
    let h = common::start().await;
    let maps = h.api::<ConfigMap>();
    for name in ["flaky", "other"] {
        maps.create(&PostParams::default(), &config_map(name))
            .await
            .expect("created");
    }
    h.emulator.fail_deletes("configmaps", "default", "flaky", 2);
    for _ in 0..2 {
        match maps.delete("flaky", &DeleteParams::default()).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(
                    (status.code, status.reason.as_str()),
                    (500, "InternalError")
                );
            }
            other => panic!("expected a 500, got {other:?}"),
        }
        assert!(
            maps.get_opt("flaky").await.expect("get").is_some(),
            "it stays"
        );
    }
    maps.delete("other", &DeleteParams::default())
        .await
        .expect("another object is deleted");
    maps.delete("flaky", &DeleteParams::default())
        .await
        .expect("the third delete works");
    assert!(maps.get_opt("flaky").await.expect("get").is_none());

    // Until allowed again.
    maps.create(&PostParams::default(), &config_map("flaky"))
        .await
        .expect("created again");
    h.emulator
        .fail_deletes("configmaps", "default", "flaky", u32::MAX);
    assert!(
        maps.delete("flaky", &DeleteParams::default())
            .await
            .is_err()
    );
    h.emulator.allow_deletes("configmaps", "default", "flaky");
    maps.delete("flaky", &DeleteParams::default())
        .await
        .expect("allowed again");
}
