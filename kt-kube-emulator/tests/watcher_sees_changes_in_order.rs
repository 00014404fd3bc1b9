//! kube-runtime's watcher (list, then watch from the list's resourceVersion) sees ADDED,
//! MODIFIED and DELETED in order; raw watches get bookmarks and 410 Expired.

mod common;

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kt_kube_emulator::EmulatorConfig;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"w": "yes"}}}))
        .expect("valid")
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_in_order() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    api.create(&PostParams::default(), &cm("before"))
        .await
        .expect("create");
    let config = watcher::Config::default().labels("w=yes");
    let mut events = watcher(api.clone(), config).boxed();
    // The initial list: Init, InitApply(before), InitDone.
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok");
        match event {
            Some(watcher::Event::InitApply(o)) => initial.push(o.metadata.name.unwrap_or_default()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("the watcher ended"),
        }
    }
    assert_eq!(initial, ["before"]);

    api.create(&PostParams::default(), &cm("x"))
        .await
        .expect("create");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .expect("patch");
    api.delete("x", &DeleteParams::default())
        .await
        .expect("delete");
    // A change that takes an object out of the selection reads as a deletion.
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"w": null}}})),
    )
    .await
    .expect("unlabel");

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok");
        match event {
            Some(watcher::Event::Apply(o)) => {
                let has_data = o.data.is_some();
                seen.push(format!(
                    "apply {} {has_data}",
                    o.metadata.name.unwrap_or_default()
                ));
            }
            Some(watcher::Event::Delete(o)) => {
                seen.push(format!("delete {}", o.metadata.name.unwrap_or_default()))
            }
            Some(_) => {}
            None => panic!("the watcher ended"),
        }
    }
    assert_eq!(
        seen,
        ["apply x false", "apply x true", "delete x", "delete before"]
    );
}

#[tokio::test]
async fn raw_watch_gets_bookmarks_and_expires_old_versions() {
    let mut config = EmulatorConfig::default();
    config.bookmark_interval = Duration::from_millis(20);
    config.history_capacity = 16;
    let h = common::start_with(config).await;
    let api = h.api::<ConfigMap>();
    let list = api.list(&Default::default()).await.expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("a list resourceVersion");

    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    let mut added = false;
    let mut bookmark = false;
    while !(added && bookmark) {
        match tokio::time::timeout(common::WAIT, stream.try_next())
            .await
            .expect("in time")
            .expect("ok")
        {
            Some(WatchEvent::Added(o)) => added |= o.metadata.name.as_deref() == Some("one"),
            Some(WatchEvent::Bookmark(b)) => bookmark |= !b.metadata.resource_version.is_empty(),
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("the watch ended"),
        }
    }

    for i in 0..40 {
        api.create(&PostParams::default(), &cm(&format!("filler{i}")))
            .await
            .expect("create");
    }
    let mut old = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    let first = tokio::time::timeout(common::WAIT, old.try_next())
        .await
        .expect("in time")
        .expect("ok");
    match first {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let h = common::start().await;
    let api = h.api::<ConfigMap>();
    api.create(&PostParams::default(), &cm("existing"))
        .await
        .expect("create");
    let config = watcher::Config::default().labels("w=yes").streaming_lists();
    let mut events = watcher(api.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok");
        match event {
            Some(watcher::Event::InitApply(o)) => initial.push(o.metadata.name.unwrap_or_default()),
            Some(watcher::Event::InitDone) => break,
            Some(_) => {}
            None => panic!("the watcher ended"),
        }
    }
    assert_eq!(initial, ["existing"]);
    api.create(&PostParams::default(), &cm("later"))
        .await
        .expect("create");
    loop {
        let event = tokio::time::timeout(common::WAIT, events.try_next())
            .await
            .expect("in time")
            .expect("ok");
        if let Some(watcher::Event::Apply(o)) = event {
            assert_eq!(o.metadata.name.as_deref(), Some("later"));
            break;
        }
    }
}
