//! Deleting an owner deletes its dependents of any kind, recursively; Orphan keeps them.

mod common;

use common::{shell_pod, wait_deleted};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

fn owned_by(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "v1", "kind": kind, "name": name, "uid": uid}])
}

#[tokio::test]
async fn deleting_an_owner_deletes_dependents_recursively() {
    let h = common::start().await;
    let pp = PostParams::default();
    let cms = h.api::<ConfigMap>();
    let secrets = h.api::<Secret>();
    let root: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "root"}})).expect("valid");
    let root = cms.create(&pp, &root).await.expect("root");
    let root_uid = root.metadata.uid.expect("uid");

    let mut pod = shell_pod("child-pod", "exec sleep 100", "Always");
    pod["metadata"]["ownerReferences"] = owned_by("ConfigMap", "root", &root_uid);
    h.create_pod(pod).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "child-secret", "ownerReferences": owned_by("ConfigMap", "root", &root_uid)}
    }))
    .expect("valid");
    let secret = secrets.create(&pp, &secret).await.expect("secret");
    let grandchild: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "grandchild", "ownerReferences": owned_by("Secret", "child-secret", &secret.metadata.uid.expect("uid"))}
    }))
    .expect("valid");
    cms.create(&pp, &grandchild).await.expect("grandchild");

    cms.delete("root", &DeleteParams::default())
        .await
        .expect("delete root");
    wait_deleted(&h.pods(), "child-pod").await;
    wait_deleted(&secrets, "child-secret").await;
    wait_deleted(&cms, "grandchild").await;
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents() {
    let h = common::start().await;
    let pp = PostParams::default();
    let cms = h.api::<ConfigMap>();
    let owner: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "owner"}})).expect("valid");
    let uid = cms
        .create(&pp, &owner)
        .await
        .expect("owner")
        .metadata
        .uid
        .expect("uid");
    let dep: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "dep", "ownerReferences": owned_by("ConfigMap", "owner", &uid)}
    }))
    .expect("valid");
    cms.create(&pp, &dep).await.expect("dependent");
    cms.delete("owner", &DeleteParams::orphan())
        .await
        .expect("delete");
    let kept = cms.get("dep").await.expect("the dependent stays");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}
