//! The HTTP side: hyper serving HTTP/1.1 on loopback, routing of Kubernetes API paths to
//! the cluster's operations, and streaming bodies for watches and followed logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cluster::{Cluster, DeleteOptions};
use crate::patch::PatchKind;
use crate::resources::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::store::Key;
use crate::{logs_api, portforward, table, watch};

/// Response bodies: whole documents or streams.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body fed by a channel; it ends when the sender is dropped.
pub(crate) fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status())
}

/// Accepts connections until the task is aborted; aborting drops every connection.
pub(crate) async fn serve(listener: TcpListener, cluster: Arc<Cluster>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else { continue };
        // Watches and port-forwards write small frames: send them at once, as a real API
        // server does, rather than batching them behind Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let cluster = cluster.clone();
                async move { Ok::<_, Infallible>(handle(cluster, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Query parameters in order.
pub(crate) type Query = Vec<(String, String)>;

pub(crate) fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn flag(query: &Query, name: &str) -> bool {
    param(query, name).is_some_and(|v| v == "true" || v == "1")
}

/// A resource path, parsed.
struct Target {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

enum Route {
    Document(Value),
    Text(&'static str),
    Resource(Target),
}

fn route(path: &str, server_address: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || ApiError::path_not_found(path);
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Ok(Route::Document(resources::api_versions(server_address))),
        ["apis"] => return Ok(Route::Document(resources::api_group_list())),
        ["version"] => return Ok(Route::Document(resources::version())),
        ["healthz"] | ["readyz"] | ["livez"] => return Ok(Route::Text("ok")),
        ["api", "v1"] => {
            return resources::api_resource_list("", "v1")
                .map(Route::Document)
                .ok_or_else(not_found);
        }
        ["apis", g] => {
            return resources::api_group(g)
                .map(Route::Document)
                .ok_or_else(not_found);
        }
        ["apis", g, v] => {
            return resources::api_resource_list(g, v)
                .map(Route::Document)
                .ok_or_else(not_found);
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(ns.to_string()), [&[*plural][..], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let plural = rest.first().ok_or_else(not_found)?;
    let resource = resources::find(group, version, plural).ok_or_else(not_found)?;
    if rest.len() > 3 {
        return Err(not_found());
    }
    Ok(Route::Resource(Target {
        resource,
        namespace: if resource.namespaced { namespace } else { None },
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
        legacy_watch,
    }))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Response<Body> {
    match dispatch(cluster, req).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn dispatch(
    cluster: Arc<Cluster>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query: Query = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let target = match route(req.uri().path(), &cluster.server_address)? {
        Route::Document(doc) => return Ok(json_response(StatusCode::OK, &doc)),
        Route::Text(text) => return Ok(Response::new(full(text))),
        Route::Resource(target) => target,
    };
    let dry_run = param(&query, "dryRun").is_some_and(|v| !v.is_empty());
    let resource = target.resource;
    let default_ns = cluster.config.default_namespace.clone();
    let ns = target.namespace.clone().unwrap_or_default();
    let method = req.method().clone();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let key = |name: &str| Key::new(resource, &ns, name);
    match (&method, target.name.as_deref(), target.sub.as_deref()) {
        (&Method::GET, None, None) => {
            let labels = LabelSelector::parse(param(&query, "labelSelector").unwrap_or_default())
                .map_err(|e| {
                ApiError::bad_request(format!("unable to parse requirement: {e}"))
            })?;
            let fields = FieldSelector::parse(param(&query, "fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            if target.legacy_watch || flag(&query, "watch") {
                return start_watch(cluster, &target, &query, &accept, labels, fields);
            }
            let list = cluster.list(resource, target.namespace.as_deref(), &labels, &fields);
            let list = paginate(list, param(&query, "limit"), param(&query, "continue"))?;
            if table::wanted(&accept) {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let rv = list
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(resource, &items, rv),
                ));
            }
            Ok(json_response(StatusCode::OK, &list))
        }
        (&Method::POST, None, None) => {
            let body = parse_json(&read_body(req).await?)?;
            let ns = match (&target.namespace, resource.namespaced) {
                (Some(ns), _) => ns.clone(),
                (None, true) => body
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or(default_ns),
                (None, false) => String::new(),
            };
            let created = cluster.create(resource, &ns, body, dry_run)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (&Method::DELETE, None, None) => {
            let labels = LabelSelector::parse(param(&query, "labelSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            let fields = FieldSelector::parse(param(&query, "fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            let opts = DeleteOptions::parse(&read_body(req).await?, &query)?;
            let list = cluster.list(resource, target.namespace.as_deref(), &labels, &fields);
            let mut deleted = Vec::new();
            for item in list["items"].as_array().into_iter().flatten() {
                if let Ok(d) = cluster.delete(&Key::of(resource, item), &opts) {
                    deleted.push((*d).clone());
                }
            }
            let mut out = list.clone();
            out["items"] = Value::Array(deleted);
            Ok(json_response(StatusCode::OK, &out))
        }
        (&Method::GET, Some(_), None) if target.legacy_watch || flag(&query, "watch") => {
            let (labels, fields) = (LabelSelector::default(), FieldSelector::default());
            start_watch(cluster, &target, &query, &accept, labels, fields)
        }
        (&Method::GET, Some(name), sub @ (None | Some("status"))) => {
            let object = cluster.get(&key(name))?;
            if sub.is_none() && table::wanted(&accept) {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(resource, &[(*object).clone()], rv),
                ));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let body = parse_json(&read_body(req).await?)?;
            let updated = cluster.update(&key(name), body, sub.is_some(), dry_run)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let kind = PatchKind::from_content_type(&content_type)?;
            let body = read_body(req).await?;
            let existed = cluster.store.get(&key(name)).is_some();
            let patched = cluster.patch(&key(name), kind, &body, sub.is_some(), dry_run)?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(code, &patched))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = DeleteOptions::parse(&read_body(req).await?, &query)?;
            let plural = resource.qualified_plural();
            if cluster.faults.delete_fails(&plural, &ns, name) {
                return Err(ApiError::internal(format!(
                    "Internal error occurred: deleting {plural} \"{name}\" failed \
                     (injected by the emulator)"
                )));
            }
            let deleted = cluster.delete(&key(name), &opts)?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        (&Method::POST, Some(name), Some("eviction")) if resource.is_pod() => {
            let body = read_body(req).await?;
            let eviction = if body.is_empty() {
                Value::Null
            } else {
                parse_json(&body)?
            };
            let options = eviction
                .get("deleteOptions")
                .map(|o| o.to_string())
                .unwrap_or_default();
            let opts = DeleteOptions::parse(options.as_bytes(), &[])?;
            cluster.delete(&key(name), &opts)?;
            Ok(json_response(StatusCode::CREATED, &status::success()))
        }
        (&Method::GET, Some(name), Some("log")) if resource.is_pod() => {
            logs_api::serve(&cluster, &ns, name, &query)
        }
        (&Method::GET | &Method::POST, Some(name), Some("portforward")) if resource.is_pod() => {
            portforward::serve(&cluster, &ns, name, &query, req)
        }
        (_, _, Some(sub)) if !matches!(sub, "status") => Err(ApiError::path_not_found(&format!(
            "{}/{sub}",
            resource.plural
        ))),
        (m, _, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// Where a list continues: after the item with this namespace and name.
fn position(item: &Value) -> (String, String) {
    let s = |p: &str| {
        item.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// Applies `limit` and `continue` to a list (items are in namespace/name order). Unlike the
/// real server, a continued list shows the current state, not a snapshot at the first page.
fn paginate(mut list: Value, limit: Option<&str>, token: Option<&str>) -> Result<Value, ApiError> {
    let limit: usize = limit.and_then(|l| l.parse().ok()).unwrap_or(0);
    let Some(items) = list.get_mut("items").and_then(Value::as_array_mut) else {
        return Ok(list);
    };
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
        let (ns, name) = decoded.split_once('/').unwrap_or(("", decoded.as_str()));
        let after = (ns.to_string(), name.to_string());
        items.retain(|item| position(item) > after);
    }
    if limit == 0 || items.len() <= limit {
        return Ok(list);
    }
    let remaining = items.len() - limit;
    items.truncate(limit);
    let (ns, name) = items.last().map(position).unwrap_or_default();
    let next = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ns}/{name}"));
    list["metadata"]["continue"] = Value::String(next);
    list["metadata"]["remainingItemCount"] = Value::from(remaining);
    Ok(list)
}

fn start_watch(
    cluster: Arc<Cluster>,
    target: &Target,
    query: &Query,
    accept: &str,
    labels: LabelSelector,
    fields: FieldSelector,
) -> Result<Response<Body>, ApiError> {
    let from = match param(query, "resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = param(query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    // A watch on a single object (`/pods/NAME?watch` or the legacy `/watch/.../pods/NAME`)
    // is a watch with a name field selector.
    let mut fields = fields;
    if let Some(name) = &target.name {
        let combined = format!("metadata.name={name}");
        fields = FieldSelector::parse(&combined).map_err(ApiError::bad_request)?;
    }
    let request = watch::WatchRequest {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
        from,
        send_initial_events: flag(query, "sendInitialEvents"),
        bookmarks: flag(query, "allowWatchBookmarks"),
        timeout,
        table: table::wanted(accept),
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(watch::run(cluster, request, tx));
    let mut response = Response::new(channel_body(rx));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path, "127.0.0.1:1") {
            Ok(Route::Resource(t)) => t,
            _ => panic!("{path} is not a resource path"),
        }
    }

    #[test]
    fn resource_paths() {
        let t = target("/api/v1/namespaces/ns/pods/p/log");
        assert_eq!(
            (
                t.resource.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("pods", Some("ns"), Some("p"), Some("log"))
        );
        let t = target("/api/v1/namespaces/ns");
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        let t = target("/api/v1/namespaces/ns/status");
        assert_eq!(
            (t.resource.plural, t.name.as_deref(), t.sub.as_deref()),
            ("namespaces", Some("ns"), Some("status"))
        );
        let t = target("/apis/apps/v1/namespaces/x/deployments");
        assert_eq!(
            (t.resource.kind, t.namespace.as_deref()),
            ("Deployment", Some("x"))
        );
        let t = target("/api/v1/watch/namespaces/x/pods");
        assert!(t.legacy_watch);
        assert!(route("/api/v1/nonsense", "").is_err());
    }
}
