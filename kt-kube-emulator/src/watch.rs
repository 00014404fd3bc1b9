//! Watch streams: JSON lines of `{"type": ..., "object": ...}` read from the store's history,
//! filtered by namespace and selectors, with `BOOKMARK`s, timeouts, initial events and
//! 410 `Expired` for resourceVersions that fell out of the history.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType};

/// What a watch request asked for.
pub(crate) struct WatchRequest {
    pub resource: &'static ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None`: start with synthetic ADDED events for what exists ("" and "0" both do).
    pub from: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    /// Objects travel as one-row `Table`s (`kubectl get -w`); column definitions go with
    /// the first event only, as from the real server.
    pub table: bool,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut out = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

fn bookmark(resource: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": meta}),
    )
}

/// Sends one event; returns false once the client is gone.
async fn send(
    tx: &mpsc::Sender<Bytes>,
    req: &WatchRequest,
    kind: &str,
    object: &Value,
    first: &mut bool,
) -> bool {
    let line = if req.table {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut table = crate::table::table(req.resource, std::slice::from_ref(object), rv);
        if !std::mem::take(first) {
            table["columnDefinitions"] = Value::Null;
        }
        line(kind, &table)
    } else {
        line(kind, object)
    };
    tx.send(line).await.is_ok()
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }

    /// The event as this watch sees it: changes that move an object into or out of the
    /// selection become ADDED or DELETED, as from the real server.
    fn view(&self, event: &Event) -> Option<(EventType, Arc<Value>)> {
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != event.namespace)
        {
            return None;
        }
        let now = self.selects(&event.object);
        let before = event.previous.as_ref().map(|p| self.selects(p));
        let kind = match (event.kind, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Deleted, Some(true), _) => EventType::Deleted,
            (EventType::Modified, Some(true), true) => EventType::Modified,
            (EventType::Modified, Some(false), true) => EventType::Added,
            (EventType::Modified, Some(true), false) => EventType::Deleted,
            _ => return None,
        };
        Some((kind, event.object.clone()))
    }
}

/// Streams the watch into `tx` until the timeout, the client leaving, or expiry.
pub(crate) async fn run(cluster: Arc<Cluster>, req: WatchRequest, tx: mpsc::Sender<Bytes>) {
    let store = &cluster.store;
    // Subscribe before reading so that no change between the read and the wait is missed.
    let mut changes = store.subscribe();
    let mut first = true;
    let mut cursor = match req.from {
        Some(rv) if !req.send_initial_events => rv,
        _ => {
            let (items, rv) = store.list(req.resource, req.namespace.as_deref());
            for item in items.iter().filter(|o| req.selects(o)) {
                if !send(&tx, &req, "ADDED", item, &mut first).await {
                    return;
                }
            }
            if req.send_initial_events && tx.send(bookmark(req.resource, rv, true)).await.is_err() {
                return;
            }
            rv
        }
    };
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval(cluster.config.bookmark_interval);
    ticks.tick().await;
    loop {
        match store.events_since(cursor, req.resource) {
            Err(expired) => {
                let status = ApiError::expired(format!(
                    "too old resource version: {} ({})",
                    expired.requested, expired.oldest
                ))
                .to_status();
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            }
            Ok((events, next)) => {
                for event in &events {
                    if let Some((kind, object)) = req.view(event)
                        && !send(&tx, &req, kind.as_str(), &object, &mut first).await
                    {
                        return;
                    }
                }
                cursor = next;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = ticks.tick(), if req.bookmarks => {
                if tx.send(bookmark(req.resource, cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => return,
            _ = tx.closed() => return,
        }
    }
}
