//! `GET .../pods/{name}/log`: `container`, `previous`, `tailLines`, `limitBytes` and
//! `follow` (streams until the container instance exits).

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::kubelet::logs::{ContainerLog, tail_lines};
use crate::resources;
use crate::server::{Body, Query, channel_body, flag, full, param};
use crate::status::ApiError;
use crate::store::Key;

fn text(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Serves a log request.
pub(crate) fn serve(
    cluster: &Arc<Cluster>,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let pod = cluster.get(&Key::new(resources::pods(), namespace, name))?;
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let container = match param(query, "container") {
        Some(c) if !c.is_empty() => c.to_string(),
        _ if names.len() == 1 => names[0].to_string(),
        _ => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let init_names: Vec<&str> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    if !names.contains(&container.as_str()) && !init_names.contains(&container.as_str()) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let previous = flag(query, "previous");
    let waiting = || {
        let reason = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["name"] == container.as_str()))
            .and_then(|c| c.pointer("/state/waiting/reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating")
            .to_string();
        if previous {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        } else {
            ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            ))
        }
    };
    let log: Arc<ContainerLog> = cluster
        .kubelet
        .runtime(namespace, name)
        .and_then(|rt| rt.logs.get(&container).cloned())
        .ok_or_else(waiting)?;
    let snapshot = log.snapshot(previous).ok_or_else(waiting)?;
    let mut data: &[u8] = &snapshot.data;
    if let Some(n) = param(query, "tailLines").and_then(|n| n.parse::<usize>().ok()) {
        data = tail_lines(data, n);
    }
    let limit = param(query, "limitBytes").and_then(|n| n.parse::<usize>().ok());
    if let Some(limit) = limit {
        data = &data[..data.len().min(limit)];
    }
    if !flag(query, "follow") || previous {
        return Ok(text(full(Bytes::copy_from_slice(data))));
    }
    let (tx, rx) = mpsc::channel(64);
    let first = Bytes::copy_from_slice(data);
    tokio::spawn(async move {
        let mut changes = log.subscribe();
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        let mut offset = snapshot.end;
        loop {
            let Some(chunk) = log.read_from(snapshot.instance, offset) else {
                return;
            };
            offset = chunk.end;
            if !chunk.data.is_empty() && tx.send(Bytes::from(chunk.data)).await.is_err() {
                return;
            }
            if chunk.closed {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Ok(text(channel_body(rx)))
}
