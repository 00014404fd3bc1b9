//! `pods/{name}/portforward?ports=P[,Q]` over WebSocket, as kube's `Api::portforward` and
//! kubectl speak it (subprotocol `v4.channel.k8s.io`).
//!
//! Each requested port `i` gets a data channel `2i` and an error channel `2i+1`. The server
//! opens each channel with a frame of the channel byte and the port number (u16,
//! little-endian); then every binary message is the channel byte followed by payload. Each
//! port is bridged to a TCP connection to `podIP:port`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::cluster::Cluster;
use crate::resources;
use crate::server::{Body, Query, full, param};
use crate::status::ApiError;
use crate::store::Key;

const PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];

/// Validates the request and answers `101 Switching Protocols`; the bridge runs in a task.
pub(crate) fn serve(
    cluster: &Arc<Cluster>,
    namespace: &str,
    name: &str,
    query: &Query,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let pod = cluster.get(&Key::new(resources::pods(), namespace, name))?;
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let ip: Option<Ipv4Addr> = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse().ok());
    let Some(ip) = ip.filter(|_| running) else {
        return Err(ApiError::bad_request(format!("pod {name} is not running")));
    };
    let ports: Vec<u16> = param(query, "ports")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::bad_request("invalid port in ports"))?;
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port is required"));
    }
    let headers = req.headers();
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or_else(|| {
        ApiError::bad_request("port-forward needs a WebSocket upgrade (SPDY is not supported)")
    })?;
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let protocol = offered
        .split(',')
        .map(str::trim)
        .find(|p| PROTOCOLS.contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no supported WebSocket subprotocol among {offered:?}"
            ))
        })?
        .to_string();
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            bridge(ws, ip, ports).await;
        }
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    let values = [
        (header::SEC_WEBSOCKET_ACCEPT, accept),
        (header::SEC_WEBSOCKET_PROTOCOL, protocol),
    ];
    for (name, value) in values {
        let value =
            header::HeaderValue::from_str(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        h.insert(name, value);
    }
    Ok(response)
}

fn framed(channel: u8, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(payload);
    Message::binary(bytes)
}

async fn bridge<S>(ws: WebSocketStream<S>, ip: Ipv4Addr, ports: Vec<u16>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let close = message.is_close();
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data = (2 * i) as u8;
        let error = data + 1;
        let prefix = port.to_le_bytes();
        if out_tx.send(framed(data, &prefix)).await.is_err()
            || out_tx.send(framed(error, &prefix)).await.is_err()
        {
            return;
        }
        match TcpStream::connect((ip, *port)).await {
            Ok(stream) => {
                // Forwarded protocols (kt's QUIC over TCP among them) are latency-bound.
                let _ = stream.set_nodelay(true);
                let (mut read, write) = stream.into_split();
                writers.push(Some(write));
                let out = out_tx.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 || out.send(framed(data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            Err(e) => {
                writers.push(None);
                let message = format!("error forwarding port {port} to pod {ip}: {e}");
                let _ = out_tx.send(framed(error, message.as_bytes())).await;
            }
        }
    }
    let reader_handles: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    // When every pod-side connection has ended, close the WebSocket.
    let closer = {
        let out = out_tx.clone();
        tokio::spawn(async move {
            for r in readers {
                let _ = r.await;
            }
            let _ = out.send(Message::Close(None)).await;
        })
    };
    drop(out_tx);
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Binary(bytes) if bytes.len() > 1 => {
                let channel = bytes[0] as usize;
                if channel.is_multiple_of(2)
                    && let Some(Some(w)) = writers.get_mut(channel / 2)
                    && w.write_all(&bytes[1..]).await.is_err()
                {
                    writers[channel / 2] = None;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
    drop(writers);
    // The client is gone: what the pod still sends has nowhere to go.
    for r in reader_handles {
        r.abort();
    }
    let _ = closer.await;
    let _ = writer.await;
}
