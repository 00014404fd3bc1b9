//! Create, get, list with label and field selectors, conflicts, patches and delete, through
//! the kube client.

mod common;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("valid")
}

async fn names(api: &kube::Api<ConfigMap>, selector: &str) -> Vec<String> {
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list");
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn create_get_list_with_selectors_and_delete() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    let pp = PostParams::default();
    let a = api
        .create(&pp, &cm("a", &[("app", "web"), ("tier", "front")]))
        .await
        .expect("create a");
    api.create(&pp, &cm("b", &[("app", "db")]))
        .await
        .expect("create b");
    api.create(&pp, &cm("c", &[("app", "web"), ("tier", "back")]))
        .await
        .expect("create c");
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));

    assert_eq!(names(&api, "app=web").await, ["a", "c"]);
    assert_eq!(names(&api, "app==web,tier=front").await, ["a"]);
    assert_eq!(names(&api, "app!=web").await, ["b"]);
    assert_eq!(names(&api, "tier in (front,back)").await, ["a", "c"]);
    assert_eq!(names(&api, "app notin (web)").await, ["b"]);
    assert_eq!(names(&api, "tier").await, ["a", "c"]);
    assert_eq!(names(&api, "!tier").await, ["b"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);
    assert!(
        by_name
            .metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );

    let got = api.get("a").await.expect("get");
    assert_eq!(
        got.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );

    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let missing = api.get("a").await.expect_err("gone");
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn errors_have_the_real_status_shape() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    let pp = PostParams::default();
    api.create(&pp, &cm("dup", &[])).await.expect("create");
    let dup = api
        .create(&pp, &cm("dup", &[]))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{dup:?}"
    );

    let nameless: ConfigMap = serde_json::from_value(json!({"metadata": {}})).expect("valid");
    let invalid = api.create(&pp, &nameless).await.expect_err("no name");
    assert!(
        matches!(invalid, kube::Error::Api(ref s) if s.code == 422 && s.reason == "Invalid"),
        "{invalid:?}"
    );

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).expect("valid");
    let made = api.create(&pp, &generated).await.expect("generateName");
    let name = made.metadata.name.expect("a name");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Replace with a stale resourceVersion conflicts; with the current one it succeeds.
    let current = api.get("dup").await.expect("get");
    let mut stale = current.clone();
    let mut fresh = current.clone();
    fresh.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    let replaced = api.replace("dup", &pp, &fresh).await.expect("replace");
    assert_ne!(
        replaced.metadata.resource_version,
        current.metadata.resource_version
    );
    stale.data = Some(BTreeMap::from([("k".into(), "v3".into())]));
    let conflict = api.replace("dup", &pp, &stale).await.expect_err("stale");
    assert!(
        matches!(conflict, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{conflict:?}"
    );
}

#[tokio::test]
async fn merge_strategic_and_apply_patches() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    api.create(&PostParams::default(), &cm("p", &[("a", "1"), ("b", "2")]))
        .await
        .expect("create");
    let pp = PatchParams::default();
    let merged = api
        .patch(
            "p",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"x": "y"}}),
            ),
        )
        .await
        .expect("merge patch");
    let labels = merged.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels.get("c").map(String::as_str), Some("3"));
    let strategic = api
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"metadata": {"annotations": {"note": "hi"}}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(
        strategic
            .metadata
            .annotations
            .and_then(|a| a.get("note").cloned())
            .as_deref(),
        Some("hi")
    );
    let apply = PatchParams::apply("tests").force();
    let applied = api
        .patch("q", &apply, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "q"}, "data": {"a": "b"}})))
        .await
        .expect("server-side apply creates");
    assert_eq!(
        applied.data.and_then(|d| d.get("a").cloned()).as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn secrets_fold_string_data_and_services_get_a_cluster_ip() {
    let h = common::start().await;
    let secrets = h.api::<Secret>();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "abc"}}))
            .expect("valid");
    let made = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    let data = made.data.expect("data");
    assert_eq!(data.get("token").map(|b| b.0.as_slice()), Some(&b"abc"[..]));
    let services = h.api::<k8s_openapi::api::core::v1::Service>();
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "svc"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}
    }))
    .expect("valid");
    let made = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create");
    assert!(
        made.spec
            .and_then(|s| s.cluster_ip)
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    for name in ["p1", "p2", "p3", "p4", "p5"] {
        api.create(&PostParams::default(), &cm(name, &[("page", "yes")]))
            .await
            .expect("create");
    }
    let mut params = ListParams::default().labels("page=yes").limit(2);
    let mut seen = Vec::new();
    loop {
        let page = api.list(&params).await.expect("a page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen, ["p1", "p2", "p3", "p4", "p5"]);
}
