//! The node: this process's QUIC endpoint, serving the actors it exports and holding
//! its connections to other nodes.
//!
//! One UDP socket per process, bound to loopback on a port the kernel picks, is both
//! server and client, so a connection's remote address is also the peer's listening
//! address. Each connection, whoever opened it, gets a [`Peer`]: the calls this process
//! has pending on it, and a reader for replies that arrive on their own streams.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use kt_core::handle_wire::HandleAddress;
use kt_core::{EncodedReply, ErasedActor, Error};
use tokio::sync::{OnceCell, oneshot};
use tokio_util::codec::FramedRead;

use crate::TransportError;
use crate::frame::{Frame, codec, decode_frame, max_message_bytes};
use crate::route::{RemoteRoute, RouteState};
use crate::stream_socket::{self, StreamEvent, StreamSocket};
use crate::tls::{ClusterCa, Identity, SERVER_NAME};

/// QUIC settings shared by every connection: room for large replies, and keep-alives so
/// that a silent peer is noticed.
pub(crate) fn transport_config() -> Arc<quinn::TransportConfig> {
    Arc::new(base_transport_config())
}

/// The settings of [`transport_config`], still open to changes: the stream path
/// ([`crate::stream_socket`]) adds its own MTU on top.
pub(crate) fn base_transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(4096));
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(4096));
    config.stream_receive_window(quinn::VarInt::from_u32(32 << 20));
    config.receive_window(quinn::VarInt::from_u32(256 << 20));
    config.send_window(256 << 20);
    config.keep_alive_interval(Some(Duration::from_secs(2)));
    config.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        10_000,
    ))));
    config
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// QUIC over byte streams: the socket that carries the datagrams and the endpoint on it.
struct StreamPath {
    socket: Arc<StreamSocket>,
    endpoint: quinn::Endpoint,
}

/// What a driver receives when a worker it started reports in.
pub(crate) struct HelloStream {
    /// The hosted actor's address, or why it could not start.
    pub result: Result<HandleAddress, Error>,
    /// Driver → worker: `Release`.
    pub control: quinn::SendStream,
    /// Worker → driver: `Gone`.
    pub events: crate::serve::Frames,
}

/// What a dialed worker receives when its driver attaches.
pub(crate) struct AttachStream {
    /// Worker → driver: `Hello`, later `Gone`.
    pub control: quinn::SendStream,
    /// Driver → worker: its end tells the worker the driver is gone.
    pub events: crate::serve::Frames,
}

/// This process's endpoint.
pub struct Node {
    me: Weak<Node>,
    /// Where the node's own tasks run (see [`use_runtime`]).
    pub(crate) runtime: tokio::runtime::Handle,
    endpoint: quinn::Endpoint,
    /// For a node on loopback: a client-only endpoint on all interfaces, made on first
    /// use, for peers elsewhere (pods). It accepts nothing.
    outbound: std::sync::OnceLock<quinn::Endpoint>,
    client_config: quinn::ClientConfig,
    /// This node's identity, for the stream path's own TLS configs.
    identity: Identity,
    /// QUIC over byte streams (port-forwards), made on first use.
    stream_path: std::sync::OnceLock<StreamPath>,
    /// Peers reached over a forwarded stream: their address → the stream's address on
    /// the stream path.
    forwarded: Mutex<HashMap<SocketAddr, SocketAddr>>,
    address: SocketAddr,
    ca: Option<ClusterCa>,
    exports: Mutex<HashMap<u64, ErasedActor>>,
    peers: Mutex<HashMap<SocketAddr, Arc<OnceCell<Arc<Peer>>>>>,
    routes: Mutex<HashMap<(String, u64), Weak<RemoteRoute>>>,
    hellos: Mutex<HashMap<u64, oneshot::Sender<HelloStream>>>,
    /// On a dialed worker: the driver's control stream, by token.
    attaches: Mutex<HashMap<u64, oneshot::Sender<AttachStream>>>,
    /// On a worker: fires when the driver releases the hosted actor.
    releases: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Set when the process is about to exit: call streams stop taking calls.
    draining: tokio::sync::watch::Sender<bool>,
    /// How many call streams are still being served.
    serving: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Counts one call stream as served until dropped.
pub(crate) struct Serving(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

static GLOBAL: Mutex<Option<Arc<Node>>> = Mutex::new(None);

/// The CA the driver's node is to use, when a backend brings one (see [`use_ca`]).
static DRIVER_CA: Mutex<Option<ClusterCa>> = Mutex::new(None);

/// Makes this driver's node use `ca` (a cluster's CA, shared with the workers a backend
/// starts there) instead of this user's machine CA. It must come before the node
/// starts, that is before the first spawn; a node already started with another CA is an
/// error, since its workers could not trust each other.
pub fn use_ca(ca: ClusterCa) -> Result<(), Error> {
    if let Some(node) = &*lock(&GLOBAL) {
        let same = node
            .ca()
            .is_some_and(|current| current.certificate_der() == ca.certificate_der());
        return if same {
            Ok(())
        } else {
            Err(Error::InvalidOptions {
                message: "this process's node already started with another CA: set up the \
                          cluster placement before the first spawn"
                    .into(),
            })
        };
    }
    *lock(&DRIVER_CA) = Some(ca);
    Ok(())
}

static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();

/// Tells the transport which runtime lives as long as the process (`#[kt::main]`'s, or the
/// runtime shared by `#[kt::test]`s), so the node's tasks run there. Without it the node
/// gets a runtime of its own on a background thread.
pub fn use_runtime(runtime: tokio::runtime::Handle) {
    let _ = RUNTIME.set(runtime);
}

/// The runtime the node's tasks run on: it must outlive every caller's runtime.
fn node_runtime() -> Result<tokio::runtime::Handle, TransportError> {
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kt-node".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(std::future::pending::<()>());
                }
                Err(error) => {
                    let _ = tx.send(Err(TransportError::Io(error.to_string())));
                }
            }
        })
        .map_err(|e| TransportError::Io(e.to_string()))?;
    let handle = rx.recv().map_err(|e| TransportError::Io(e.to_string()))??;
    Ok(RUNTIME.get_or_init(|| handle).clone())
}

impl Node {
    /// This process's node, started on first use as a driver: with this user's machine
    /// CA (see [`crate::directory`]), so that other drivers on this machine trust its
    /// workers, or with a fresh session CA when the state directory cannot be used.
    pub fn global() -> Result<Arc<Node>, TransportError> {
        let mut global = lock(&GLOBAL);
        if let Some(node) = &*global {
            return Ok(node.clone());
        }
        let ca = match lock(&DRIVER_CA).take() {
            Some(ca) => ca,
            None => match crate::directory::machine_ca() {
                Ok(ca) => ca,
                Err(error) => {
                    tracing::warn!("{error}; using a CA for this process only");
                    ClusterCa::generate()?
                }
            },
        };
        let identity = ca.issue("kt driver")?;
        let node = Node::start(&identity, Some(ca))?;
        *global = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node with an identity given by its driver (worker mode).
    pub fn install(identity: &Identity) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start(identity, None)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }

    /// Starts this process's node on `bind` with an identity given by its driver (a
    /// worker the driver dials: a pod listening on its own IP).
    pub fn install_at(identity: &Identity, bind: SocketAddr) -> Result<Arc<Node>, TransportError> {
        if let Ok(current) = tokio::runtime::Handle::try_current() {
            use_runtime(current);
        }
        let node = Node::start_at(identity, None, bind)?;
        *lock(&GLOBAL) = Some(node.clone());
        Ok(node)
    }

    /// Starts a node on loopback with `identity`; `ca` lets it issue identities to workers.
    pub fn start(identity: &Identity, ca: Option<ClusterCa>) -> Result<Arc<Node>, TransportError> {
        Node::start_at(identity, ca, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts a node on `bind` with `identity`; `ca` lets it issue identities to workers.
    pub fn start_at(
        identity: &Identity,
        ca: Option<ClusterCa>,
        bind: SocketAddr,
    ) -> Result<Arc<Node>, TransportError> {
        let runtime = node_runtime()?;
        let _in_runtime = runtime.enter();
        let mut endpoint = quinn::Endpoint::server(identity.server_config()?, bind)
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let client_config = identity.client_config()?;
        endpoint.set_default_client_config(client_config.clone());
        let address = endpoint
            .local_addr()
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            runtime: runtime.clone(),
            endpoint,
            outbound: std::sync::OnceLock::new(),
            client_config,
            identity: identity.clone(),
            stream_path: std::sync::OnceLock::new(),
            forwarded: Mutex::new(HashMap::new()),
            address,
            ca,
            exports: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            hellos: Mutex::new(HashMap::new()),
            attaches: Mutex::new(HashMap::new()),
            releases: Mutex::new(HashMap::new()),
            draining: tokio::sync::watch::channel(false).0,
            serving: Arc::new(tokio::sync::watch::channel(0).0),
        });
        let acceptor = node.clone();
        let incoming = node.endpoint.clone();
        runtime.spawn(async move { acceptor.accept_loop(incoming).await });
        Ok(node)
    }

    /// The address other processes reach this node at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The session CA, on a driver.
    pub(crate) fn ca(&self) -> Option<&ClusterCa> {
        self.ca.as_ref()
    }

    fn arc(&self) -> Result<Arc<Node>, Error> {
        self.me.upgrade().ok_or(Error::NoRuntime)
    }

    /// Makes `actor` reachable from other processes and returns its address. The entry
    /// does not keep the actor alive and goes away when the actor stops.
    pub fn export(&self, actor: &ErasedActor) -> Result<HandleAddress, Error> {
        let label = actor.label().clone();
        let mut exports = lock(&self.exports);
        if !exports.contains_key(&label.id) {
            exports.insert(label.id, actor.without_ownership());
            let node = self.me.clone();
            let stopped = actor.stopped();
            let id = label.id;
            self.runtime.spawn(async move {
                stopped.await;
                if let Some(node) = node.upgrade() {
                    lock(&node.exports).remove(&id);
                }
            });
        }
        Ok(HandleAddress {
            node: self.address.to_string(),
            label,
        })
    }

    pub(crate) fn exported(&self, actor_id: u64) -> Option<ErasedActor> {
        lock(&self.exports).get(&actor_id).cloned()
    }

    /// A handle to the actor at `address`: the local actor itself if this node serves it,
    /// otherwise a route over QUIC (shared with other handles to the same actor).
    pub fn import(&self, address: HandleAddress) -> Result<ErasedActor, Error> {
        if address.node == self.address.to_string()
            && let Some(local) = self.exported(address.label.id)
        {
            return Ok(local);
        }
        let key = (address.node.clone(), address.label.id);
        let mut routes = lock(&self.routes);
        if let Some(route) = routes.get(&key).and_then(Weak::upgrade) {
            return Ok(ErasedActor::new(route, None));
        }
        let route = RemoteRoute::new(self.arc()?, address, false, None);
        routes.retain(|_, weak| weak.strong_count() > 0);
        routes.insert(key, Arc::downgrade(&route));
        Ok(ErasedActor::new(route, None))
    }

    /// A (non-owning) handle to the actor at `address` whose `kill()` runs `killer`
    /// instead of asking the actor's node: for a backend that ends the actor's process
    /// itself (deleting its pod, say).
    pub fn import_with_killer(
        &self,
        address: HandleAddress,
        killer: Box<dyn Fn() + Send + Sync>,
    ) -> Result<ErasedActor, Error> {
        let route = RemoteRoute::new(self.arc()?, address, false, Some(killer));
        Ok(ErasedActor::new(route, None))
    }

    /// Registers a worker about to start; its hello arrives on the returned receiver.
    pub(crate) fn expect_hello(&self, token: u64) -> oneshot::Receiver<HelloStream> {
        let (tx, rx) = oneshot::channel();
        lock(&self.hellos).insert(token, tx);
        rx
    }

    pub(crate) fn forget_hello(&self, token: u64) {
        lock(&self.hellos).remove(&token);
    }

    /// On a dialed worker: the receiver gets the control stream of the driver that
    /// attaches with `token`.
    pub(crate) fn expect_attach(&self, token: u64) -> oneshot::Receiver<AttachStream> {
        let (tx, rx) = oneshot::channel();
        lock(&self.attaches).insert(token, tx);
        rx
    }

    /// Hands an attaching driver's stream to the worker waiting for it; hands it back
    /// when no worker waits for this token.
    pub(crate) fn deliver_attach(&self, token: u64, attach: AttachStream) -> Option<AttachStream> {
        match lock(&self.attaches).remove(&token) {
            Some(waiter) => waiter.send(attach).err(),
            None => Some(attach),
        }
    }

    /// The connection to the node at `address`, made on first use.
    pub(crate) async fn peer(&self, address: SocketAddr) -> Result<Arc<Peer>, Error> {
        let cell = {
            let mut peers = lock(&self.peers);
            let cell = peers.entry(address).or_default();
            if cell
                .get()
                .is_some_and(|peer| peer.conn.close_reason().is_some())
            {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let unavailable = |message: String| Error::Unavailable {
            target: format!("node {address}"),
            message,
        };
        let peer = cell
            .get_or_try_init(|| async {
                let forwarded = lock(&self.forwarded).get(&address).copied();
                let connecting = match forwarded {
                    Some(via) => self.stream_path()?.endpoint.connect(via, SERVER_NAME),
                    None => self.endpoint_for(address)?.connect(address, SERVER_NAME),
                }
                .map_err(|e| unavailable(e.to_string()))?;
                let conn = connecting.await.map_err(|e| unavailable(e.to_string()))?;
                Ok::<_, Error>(Peer::new(self.arc()?, conn))
            })
            .await?;
        Ok(peer.clone())
    }

    /// The endpoint to reach `address` from: this node's own, unless it is on loopback and
    /// the peer is not (a socket bound to 127.0.0.1 cannot send elsewhere).
    fn endpoint_for(&self, address: SocketAddr) -> Result<&quinn::Endpoint, Error> {
        if !self.address.ip().is_loopback() || address.ip().is_loopback() {
            return Ok(&self.endpoint);
        }
        if let Some(outbound) = self.outbound.get() {
            return Ok(outbound);
        }
        let _in_runtime = self.runtime.enter();
        let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let mut outbound = quinn::Endpoint::client(bind).map_err(|e| Error::Unavailable {
            target: format!("node {address}"),
            message: format!("cannot open an outbound socket: {e}"),
        })?;
        outbound.set_default_client_config(self.client_config.clone());
        Ok(self.outbound.get_or_init(|| outbound))
    }

    /// The stream path: an endpoint whose datagrams travel over byte streams, serving
    /// and dialing like the node's own.
    fn stream_path(&self) -> Result<&StreamPath, Error> {
        if let Some(path) = self.stream_path.get() {
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
        if self.stream_path.set(path).is_ok() {
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
                        let mut forwarded = lock(&node.forwarded);
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
        self.stream_path
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
        let previous = lock(&self.forwarded).insert(address, via);
        if let Some(previous) = previous {
            path.socket.detach(previous);
        }
        self.forget_peer(address);
        Ok(())
    }

    /// The nodes this node reaches through forwarded streams (see
    /// [`Node::forward_through`]), for diagnostics.
    pub fn forwarded_peers(&self) -> Vec<SocketAddr> {
        lock(&self.forwarded).keys().copied().collect()
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

    /// Serves an incoming connection. It is not reused for calls to that peer: calls go
    /// out on connections this node opens itself, so each connection carries streams
    /// opened by its client only.
    fn adopt(self: &Arc<Self>, conn: quinn::Connection) {
        Peer::new(self.clone(), conn);
    }

    async fn accept_loop(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                // A peer without a certificate from the session CA fails here, in the
                // handshake, before any of its bytes reach kt.
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(error) => return tracing::debug!("refused a connection: {error}"),
                };
                node.adopt(conn);
            });
        }
    }

    /// On a worker: the receiver fires when the driver releases the hosted actor.
    pub(crate) fn on_release(&self, actor_id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.releases).insert(actor_id, tx);
        rx
    }

    pub(crate) fn release_hosted(&self, actor_id: u64) {
        if let Some(release) = lock(&self.releases).remove(&actor_id) {
            let _ = release.send(());
        }
    }

    pub(crate) fn deliver_hello(&self, token: u64, hello: HelloStream) {
        if let Some(waiter) = lock(&self.hellos).remove(&token) {
            let _ = waiter.send(hello);
        }
    }

    /// Closes the endpoint after finishing every call stream (each caller has read its
    /// replies to the end), bounded to a few seconds.
    pub async fn shutdown(&self) {
        self.draining.send_replace(true);
        let mut serving = self.serving.subscribe();
        let drained = serving.wait_for(|streams| *streams == 0);
        let _ = tokio::time::timeout(Duration::from_secs(3), drained).await;
        self.endpoint.close(quinn::VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Drops (and closes) the connection to a node whose process is gone.
    pub(crate) fn forget_peer(&self, address: SocketAddr) {
        let cell = lock(&self.peers).remove(&address);
        if let Some(peer) = cell.as_ref().and_then(|cell| cell.get()) {
            peer.conn.close(quinn::VarInt::from_u32(2), b"process gone");
        }
    }

    /// Closes the endpoint at once, dropping whatever is unsent.
    pub fn close_now(&self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(1), b"driver gone");
    }

    /// Counts a call stream as served while the guard lives.
    pub(crate) fn serving(&self) -> Serving {
        self.serving.send_modify(|n| *n += 1);
        Serving(self.serving.clone())
    }

    /// Becomes true when the process is about to exit.
    pub(crate) fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }
}

/// Calls waiting for replies on one connection.
pub(crate) struct Peer {
    pub(crate) conn: quinn::Connection,
    next_call: AtomicU64,
    pending: Mutex<HashMap<u64, (EncodedReply, Arc<RouteState>)>>,
}

impl Peer {
    /// Wraps a connection, whichever side opened it: both sides serve the streams the
    /// other opens, and read replies that come on streams of their own.
    fn new(node: Arc<Node>, conn: quinn::Connection) -> Arc<Peer> {
        let peer = Arc::new(Peer {
            conn: conn.clone(),
            next_call: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        });
        let reader = peer.clone();
        let runtime = node.runtime.clone();
        runtime.spawn(async move { reader.read_out_of_band_replies().await });
        runtime.spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let node = node.clone();
                let conn = conn.clone();
                tokio::spawn(
                    async move { crate::serve::serve_stream(node, conn, send, recv).await },
                );
            }
        });
        peer
    }

    /// Registers a pending call and returns its id.
    pub(crate) fn register(&self, reply: EncodedReply, route: Arc<RouteState>) -> u64 {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, (reply, route));
        id
    }

    /// Answers a pending call.
    pub(crate) fn resolve(&self, call_id: u64, payload: bytes::Bytes) {
        let entry = lock(&self.pending).remove(&call_id);
        if let Some((reply, _)) = entry {
            reply.deliver(Vec::from(payload));
        }
    }

    /// Fails one pending call.
    pub(crate) fn fail_call(&self, call_id: u64, error: Error) {
        let entry = lock(&self.pending).remove(&call_id);
        if let Some((reply, _)) = entry {
            reply.fail(error);
        }
    }

    /// Fails every call of `route` still pending on this connection.
    pub(crate) fn fail_route(&self, route: &Arc<RouteState>) {
        let failed: Vec<_> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, (_, r))| Arc::ptr_eq(r, route))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        let error = route.gone();
        for (reply, _) in failed {
            reply.fail(error.clone());
        }
    }

    /// Large replies come on streams of their own, so they never hold up small ones.
    async fn read_out_of_band_replies(self: Arc<Self>) {
        while let Ok(recv) = self.conn.accept_uni().await {
            let peer = self.clone();
            tokio::spawn(async move { peer.read_reply_stream(recv).await });
        }
    }

    /// Reads one reply stream: a `ReplyStream` header and the raw payload it announces
    /// (read straight into one buffer of the right size), or a single `Reply` frame.
    async fn read_reply_stream(&self, recv: quinn::RecvStream) {
        let mut frames = FramedRead::new(recv, codec(max_message_bytes()));
        let Some(Ok(body)) = frames.next().await else {
            return;
        };
        let (call_id, len) = match decode_frame(&body) {
            Ok(Frame::Reply { call_id, payload }) => return self.resolve(call_id, payload),
            Ok(Frame::ReplyStream { call_id, len }) => (call_id, len),
            Ok(other) => return tracing::warn!("unexpected frame on a reply stream: {other:?}"),
            Err(error) => return tracing::warn!("unreadable reply stream: {error}"),
        };
        let limit = max_message_bytes();
        let len = match usize::try_from(len) {
            Ok(len) if len <= limit => len,
            _ => {
                let size = usize::try_from(len).unwrap_or(usize::MAX);
                return self.fail_call(call_id, Error::MessageTooLarge { size, limit });
            }
        };
        let parts = frames.into_parts();
        let mut payload = bytes::BytesMut::with_capacity(len);
        let buffered = parts.read_buf.len().min(len);
        payload.extend_from_slice(&parts.read_buf[..buffered]);
        let mut recv = parts.io;
        while payload.len() < len {
            match recv.read_chunk(len - payload.len(), true).await {
                Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
                // Cut off: the sender is going away. The call is left to the route, which
                // learns why (the worker's exit, or the connection's loss).
                Ok(None) | Err(_) => return,
            }
        }
        self.resolve(call_id, payload.freeze());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PROTOCOL_VERSION, encode_frame};
    use bytes::BytesMut;
    use std::sync::Arc;

    /// A raw QUIC client: `identity` presents a certificate, `trust` is the CA it accepts.
    fn client(identity: Option<&Identity>, trust: &Identity) -> quinn::Endpoint {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(trust.roots().expect("roots"));
        let mut config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain(), identity.key())
                .expect("cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![crate::tls::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic");
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind");
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        endpoint
    }

    /// Connects, sends `bytes` on a new stream, and returns the first frame that comes
    /// back — or the error that ended the connection before any did.
    async fn exchange(
        endpoint: &quinn::Endpoint,
        server: SocketAddr,
        bytes: &[u8],
    ) -> Result<Frame, String> {
        let conn = endpoint
            .connect(server, SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(bytes).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let mut frames = FramedRead::new(recv, codec(max_message_bytes()));
        match frames.next().await {
            Some(Ok(body)) => decode_frame(&body).map_err(|e| e.to_string()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("stream ended without a frame".into()),
        }
    }

    fn frame_bytes(frame: &Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf).expect("encode");
        buf.to_vec()
    }

    fn server() -> (Arc<Node>, ClusterCa) {
        let ca = ClusterCa::generate().expect("ca");
        let node = Node::start(&ca.issue("server").expect("leaf"), None).expect("node");
        (node, ca)
    }

    fn unknown_actor() -> Vec<u8> {
        frame_bytes(&Frame::Open {
            version: PROTOCOL_VERSION,
            actor_id: 424242,
        })
    }

    #[tokio::test]
    async fn a_peer_of_the_session_ca_is_served() {
        let (node, ca) = server();
        let me = ca.issue("client").expect("leaf");
        let reply = exchange(&client(Some(&me), &me), node.address(), &unknown_actor()).await;
        assert!(
            matches!(
                reply,
                Ok(Frame::Refused {
                    error: Error::Unavailable { .. }
                })
            ),
            "{reply:?}"
        );
    }

    #[tokio::test]
    async fn a_peer_without_a_certificate_is_refused_before_any_frame_is_read() {
        let (node, ca) = server();
        let trust = ca.issue("trust only").expect("leaf");
        let reply = exchange(&client(None, &trust), node.address(), &unknown_actor()).await;
        // A served stream would answer `Refused`; a refused handshake answers nothing.
        let error = reply.expect_err("the server must not serve a peer without a certificate");
        assert!(!error.contains("Refused"), "{error}");
    }

    #[tokio::test]
    async fn a_peer_with_a_certificate_from_another_ca_is_refused_before_any_frame_is_read() {
        let (node, ca) = server();
        let trust = ca.issue("trust only").expect("leaf");
        let stranger = ClusterCa::generate()
            .expect("ca")
            .issue("stranger")
            .expect("leaf");
        let mut stranger_trusting_server = stranger;
        stranger_trusting_server.ca_der = trust.ca_der.clone();
        let reply = exchange(
            &client(Some(&stranger_trusting_server), &trust),
            node.address(),
            &unknown_actor(),
        )
        .await;
        let error = reply.expect_err("the server must not serve a certificate from another CA");
        assert!(!error.contains("Refused"), "{error}");
    }

    #[tokio::test]
    async fn bad_first_frames_are_refused_with_a_reason_and_the_node_keeps_serving() {
        let (node, ca) = server();
        let me = ca.issue("client").expect("leaf");
        let endpoint = client(Some(&me), &me);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", vec![0, 0, 0, 3, 0xc1, 0xc1, 0xc1]),
            ("truncated", {
                let mut bytes = unknown_actor();
                bytes.truncate(bytes.len() - 2);
                bytes
            }),
            ("oversized", {
                let mut bytes = u32::MAX.to_be_bytes().to_vec();
                bytes.extend_from_slice(&[0; 32]);
                bytes
            }),
            (
                "another version",
                frame_bytes(&Frame::Open {
                    version: 99,
                    actor_id: 1,
                }),
            ),
            (
                "a reply as first frame",
                frame_bytes(&Frame::Reply {
                    call_id: 1,
                    payload: bytes::Bytes::new(),
                }),
            ),
        ];
        for (case, bytes) in cases {
            match exchange(&endpoint, node.address(), &bytes).await {
                Ok(Frame::Refused {
                    error: Error::Protocol { .. } | Error::MessageTooLarge { .. },
                }) => {}
                other => panic!("{case}: expected a Refused frame, got {other:?}"),
            }
        }
        let reply = exchange(&endpoint, node.address(), &unknown_actor()).await;
        assert!(
            matches!(
                reply,
                Ok(Frame::Refused {
                    error: Error::Unavailable { .. }
                })
            ),
            "still serving: {reply:?}"
        );
    }
}
