//! The port-forward path: QUIC, with the same mutual TLS, carried over byte streams.
//!
//! A driver outside a cluster reaches pods through the API server's port-forward, which
//! carries TCP only. The node then runs a second QUIC endpoint on a
//! [`StreamSocket`](crate::wire::stream_socket::StreamSocket) whose datagrams travel
//! over those streams, and remembers which peer addresses are reached that way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use kt_core::Error;

use super::{Node, lock};
use crate::wire::stream_socket::{self, StreamEvent, StreamSocket};

/// QUIC over byte streams: the socket that carries the datagrams and the endpoint on it.
struct StreamPath {
    socket: std::sync::Arc<StreamSocket>,
    endpoint: quinn::Endpoint,
}

/// The node's stream path (made on first use) and the peers reached through it.
#[derive(Default)]
pub(crate) struct Forwarding {
    path: OnceLock<StreamPath>,
    /// Peers reached over a forwarded stream: their address → the stream's address on
    /// the stream path.
    forwarded: Mutex<HashMap<SocketAddr, SocketAddr>>,
}

impl Forwarding {
    /// The stream-path address `address` is reached through, if it is forwarded.
    pub(crate) fn via(&self, address: SocketAddr) -> Option<SocketAddr> {
        lock(&self.forwarded).get(&address).copied()
    }
}

impl Node {
    /// The endpoint of the stream path: serving and dialing like the node's own.
    pub(crate) fn stream_endpoint(&self) -> Result<&quinn::Endpoint, Error> {
        Ok(&self.stream_path()?.endpoint)
    }

    fn stream_path(&self) -> Result<&StreamPath, Error> {
        let forwarding = &self.forwarding;
        if let Some(path) = forwarding.path.get() {
            return Ok(path);
        }
        let _in_runtime = self.runtime.enter();
        let unavailable = |message: String| Error::Unavailable {
            target: "this process's stream endpoint".into(),
            message,
        };
        let (socket, mut events) = StreamSocket::new(self.address);
        let server = stream_socket::server_config(&self.identity)?;
        let mut endpoint = socket
            .endpoint(Some(server))
            .map_err(|e| unavailable(e.to_string()))?;
        endpoint.set_default_client_config(stream_socket::client_config(&self.identity)?);
        let path = StreamPath {
            socket,
            endpoint: endpoint.clone(),
        };
        if forwarding.path.set(path).is_ok() {
            let node = self.arc()?;
            self.runtime
                .spawn(async move { node.clone().accept_loop(endpoint).await });
            // A forwarded stream that ends takes its connection with it at once, instead
            // of after the idle timeout.
            let me = self.me.clone();
            self.runtime.spawn(async move {
                while let Some(event) = events.next().await {
                    let (StreamEvent::Closed { peer, .. }, Some(node)) = (event, me.upgrade())
                    else {
                        continue;
                    };
                    let gone: Vec<SocketAddr> = {
                        let mut forwarded = lock(&node.forwarding.forwarded);
                        let gone = forwarded
                            .iter()
                            .filter(|(_, via)| **via == peer)
                            .map(|(address, _)| *address)
                            .collect();
                        forwarded.retain(|_, via| *via != peer);
                        gone
                    };
                    gone.into_iter()
                        .for_each(|address| node.forget_peer(address));
                }
            });
        }
        forwarding
            .path
            .get()
            .ok_or_else(|| unavailable("the stream endpoint could not start".into()))
    }

    /// Reaches the node at `address` through `stream` from now on (a port-forward to
    /// it): QUIC, with the same mutual TLS, carried over the stream. A connection already
    /// open to `address` is dropped.
    pub fn forward_through<S>(&self, address: SocketAddr, stream: S) -> Result<(), Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let path = self.stream_path()?;
        let _in_runtime = self.runtime.enter();
        let via = path
            .socket
            .attach_synthetic(stream)
            .map_err(|e| Error::Unavailable {
                target: format!("node {address}"),
                message: format!("cannot carry QUIC over the forwarded stream: {e}"),
            })?;
        let previous = lock(&self.forwarding.forwarded).insert(address, via);
        if let Some(previous) = previous {
            path.socket.detach(previous);
        }
        self.forget_peer(address);
        Ok(())
    }

    /// The nodes this node reaches through forwarded streams (see
    /// [`Node::forward_through`]), for diagnostics.
    pub fn forwarded_peers(&self) -> Vec<SocketAddr> {
        lock(&self.forwarding.forwarded).keys().copied().collect()
    }

    /// Also accepts QUIC over TCP on `bind` (what a port-forward reaches): for a worker
    /// that a driver outside its network reaches through the API server.
    pub fn listen_tcp(&self, bind: SocketAddr) -> Result<(), Error> {
        let path = self.stream_path()?;
        let _in_runtime = self.runtime.enter();
        let listener = std::net::TcpListener::bind(bind)
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)
            })
            .map_err(|e| Error::Unavailable {
                target: format!("TCP {bind}"),
                message: e.to_string(),
            })?;
        self.runtime
            .spawn(stream_socket::serve_tcp(listener, path.socket.clone()));
        Ok(())
    }
}
