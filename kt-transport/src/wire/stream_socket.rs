//! QUIC over reliable byte streams, for paths that carry TCP only.
//!
//! A driver outside a Kubernetes cluster reaches a worker pod through the API server's
//! port-forward, which carries TCP byte streams and nothing else. [`StreamSocket`] is a
//! quinn [`AsyncUdpSocket`] whose "datagrams" travel as length-prefixed frames over such
//! streams, so the whole QUIC stack above it — mutual TLS from [`super::tls`], streams,
//! keep-alives — works unchanged.
//!
//! # Model
//! - One socket carries many streams. Each attached stream is a *link* with its own peer
//!   address (given by the caller, or a synthetic one from `127.255.0.0/16`), so one
//!   quinn endpoint holds connections over many links: a driver attaches one stream per
//!   forwarded pod, a worker attaches one per accepted TCP connection ([`serve_tcp`]).
//! - Sending never blocks quinn: [`AsyncUdpSocket::try_send`] appends the datagram to the
//!   link's bounded send queue and a writer task writes the whole queue in one write.
//!   When the queue is full the datagram is dropped, as a router would; QUIC's loss
//!   recovery retransmits and its congestion control slows down. (Reporting `WouldBlock`
//!   instead is not workable: quinn's [`UdpPoller`] is per connection but does not say
//!   which destination it waits for, so one stalled link would stall, or spin, every
//!   connection of the socket.)
//! - Receiving: a reader task per link decodes frames into a queue shared by the socket,
//!   bounded in datagrams, so a slow endpoint pushes back on the byte streams instead of
//!   buffering without bound.
//! - A link ends when its stream ends, fails, sends a malformed frame, or is
//!   [detached](StreamSocket::detach). Its address then stops delivering, and a
//!   [`StreamEvent::Closed`] tells the owner of [`StreamEvents`] at once, so it can close
//!   the QUIC connection with that remote address instead of waiting for the idle timeout.
//!   Datagrams to an address with no link are dropped silently, as UDP would: an error
//!   from `try_send` would stop quinn's connection driver without closing the connection.
//!
//! # Wire format
//! Each datagram is a 4-byte big-endian length followed by that many bytes of one QUIC
//! datagram (tokio-util's [`LengthDelimitedCodec`] with its defaults decodes it). A
//! declared length above [`MAX_DATAGRAM_BYTES`] closes that link before anything is
//! allocated for it. There is no handshake of its own: the first frame is the client's
//! QUIC Initial.
//!
//! # MTU
//! Streams have no MTU. [`transport_config`] starts every connection at [`STREAM_MTU`]
//! (16 KiB: quinn-proto cannot start higher, see [`MAX_STREAM_MTU`]) and lets MTU
//! discovery climb to [`MAX_DATAGRAM_BYTES`] after the handshake. Measured on a 2-core
//! VM, release build, 100 MB over TCP loopback (4 runs, noisy machine): quinn's default
//! 1200 bytes 240–470 MB/s, 4 KiB 310–465 MB/s, 16 KiB 585–1310 MB/s, 16 KiB with
//! discovery to 64 KiB 720–1060 MB/s with a third of the drops; plain quinn over UDP
//! loopback 300–720 MB/s in the same runs. With quinn's default transport config the
//! stream path still works (1200 bytes, discovery to 1452).
//!
//! ```
//! # async fn demo(identity: kt_transport::wire::tls::Identity) -> Result<(), Box<dyn std::error::Error>> {
//! use kt_transport::wire::stream_socket::{self, StreamSocket};
//!
//! // Worker side: QUIC over every TCP connection accepted on a port.
//! let (socket, _events) = StreamSocket::new("127.255.255.254:1".parse()?);
//! let endpoint = socket.endpoint(Some(stream_socket::server_config(&identity)?))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(stream_socket::serve_tcp(listener, socket.clone()));
//! # drop(endpoint);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec, LengthDelimitedCodecError};

use super::TransportError;
use super::tls::Identity;

/// The size of a frame's length prefix (big-endian).
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The largest datagram a link carries: quinn's own ceiling for a UDP payload, so any
/// datagram quinn can make fits, and a larger declared length is a broken peer.
pub const MAX_DATAGRAM_BYTES: usize = 65_527;

/// The QUIC packet size [`transport_config`] starts with on the stream path (see the
/// module docs for what was measured).
pub const STREAM_MTU: u16 = 16_384;

/// The largest MTU a connection may start with. quinn-proto writes a handshake packet's
/// length as a 2-byte varint and asserts it is below 2^14, panicking inside its driver
/// (measured: an initial MTU of 65,527 aborts the process); 16,384 keeps every handshake
/// packet under that, since its header takes some of the datagram.
pub const MAX_STREAM_MTU: u16 = 16_384;

/// How many datagrams quinn may hand over in one `try_send` (quinn caps it at 10).
const TRANSMIT_SEGMENTS: usize = 10;

/// How long [`serve_tcp`] waits after an accept error that is not about one connection
/// (out of file descriptors, say), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Tuning of a [`StreamSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSocketConfig {
    /// Bytes (frames with their prefixes) a link may hold waiting for its writer; a
    /// datagram that does not fit is dropped. Bounds the latency a bulk transfer adds to
    /// a small message on the same link.
    pub send_queue_bytes: usize,
    /// Datagrams read from all links but not yet taken by quinn; when full, readers stop
    /// reading, and the byte streams push back on their senders.
    pub recv_queue_datagrams: usize,
}

impl Default for StreamSocketConfig {
    fn default() -> Self {
        StreamSocketConfig {
            send_queue_bytes: 2 << 20,
            recv_queue_datagrams: 512,
        }
    }
}

/// Counters of a [`StreamSocket`], for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSocketStats {
    /// Datagrams queued for a link.
    pub datagrams_sent: u64,
    /// Datagrams handed to quinn.
    pub datagrams_received: u64,
    /// Datagrams dropped because their link's send queue was full.
    pub dropped_queue_full: u64,
    /// Datagrams dropped because no link had their destination address.
    pub dropped_no_link: u64,
    /// Datagrams dropped because they did not fit quinn's receive buffer (an endpoint
    /// configured below [`MAX_DATAGRAM_BYTES`]).
    pub dropped_too_large: u64,
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer ended its stream.
    Eof,
    /// [`StreamSocket::detach`] was called, or the socket was dropped.
    Detached,
    /// The peer declared a datagram longer than the limit; the link was closed before
    /// reading it.
    FrameTooLarge {
        /// The limit ([`MAX_DATAGRAM_BYTES`]).
        max: usize,
    },
    /// Reading or writing the stream failed.
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's text, for logs.
        message: String,
    },
}

impl From<io::Error> for CloseReason {
    fn from(error: io::Error) -> Self {
        CloseReason::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// Something that happened to a link of a [`StreamSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A stream was attached and now answers for `peer`.
    Attached {
        /// The address QUIC sees for this link.
        peer: SocketAddr,
        /// The TCP peer, for links made by [`serve_tcp`].
        remote: Option<SocketAddr>,
    },
    /// The link of `peer` ended: its address no longer delivers, and a QUIC connection
    /// with that remote address should be closed.
    Closed {
        /// The address QUIC saw for this link.
        peer: SocketAddr,
        /// Why it ended.
        reason: CloseReason,
    },
}

/// The events of one [`StreamSocket`], in the order they happened. Unbounded (two events
/// per link), so a caller that keeps this but never reads it only costs memory.
#[derive(Debug)]
pub struct StreamEvents(mpsc::UnboundedReceiver<StreamEvent>);

impl StreamEvents {
    /// The next event; `None` once the socket is gone and every event has been read.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.0.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<StreamEvent> {
        self.0.try_recv().ok()
    }
}

/// Why a stream could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// Another live link already answers for this address.
    #[error("a stream is already attached for {0}")]
    AddressInUse(SocketAddr),
    /// The link's task needs a Tokio runtime, and none is current.
    #[error("attaching a stream needs a Tokio runtime")]
    NoRuntime,
    /// Every synthetic address tried was taken (more than 2^32 links over time, or
    /// caller-given addresses inside `127.255.0.0/16`).
    #[error("no free synthetic peer address")]
    NoFreeAddress,
}

/// One attached stream's sending half: frames wait here for the link's writer task.
struct Outgoing {
    queue: Mutex<BytesMut>,
    /// Wakes the writer when the queue stops being empty.
    wake: Notify,
    /// Ends the link at once, even while a write to a stalled stream is pending.
    cancel: Notify,
}

impl Outgoing {
    fn detach(&self) {
        // `notify_one` keeps a permit if the link's task is not waiting yet.
        self.cancel.notify_one();
    }
}

/// A datagram read from a link, waiting for quinn.
struct Inbound {
    from: SocketAddr,
    datagram: Bytes,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_no_link: AtomicU64,
    dropped_too_large: AtomicU64,
}

/// A quinn socket over reliable byte streams (see the [module docs](self)).
pub struct StreamSocket {
    me: Weak<StreamSocket>,
    local_addr: SocketAddr,
    config: StreamSocketConfig,
    links: Mutex<HashMap<SocketAddr, Arc<Outgoing>>>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: Mutex<mpsc::Receiver<Inbound>>,
    events: mpsc::UnboundedSender<StreamEvent>,
    next_synthetic: AtomicU32,
    counters: Counters,
}

impl fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSocket")
            .field("local_addr", &self.local_addr)
            .field("links", &lock(&self.links).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The form addresses are kept in: an endpoint on an IPv6 local address hands quinn's
/// sends IPv4 destinations as IPv4-mapped IPv6.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl StreamSocket {
    /// A socket with no links yet, with default tuning. `local_addr` only names this end
    /// to quinn (nothing is bound); its family decides how peers' addresses are shown.
    pub fn new(local_addr: SocketAddr) -> (Arc<StreamSocket>, StreamEvents) {
        Self::with_config(local_addr, StreamSocketConfig::default())
    }

    /// A socket with no links yet and the given tuning.
    pub fn with_config(
        local_addr: SocketAddr,
        config: StreamSocketConfig,
    ) -> (Arc<StreamSocket>, StreamEvents) {
        let (inbound_tx, inbound_rx) = mpsc::channel(config.recv_queue_datagrams.max(1));
        let (events, events_rx) = mpsc::unbounded_channel();
        let socket = Arc::new_cyclic(|me| StreamSocket {
            me: me.clone(),
            local_addr,
            config,
            links: Mutex::new(HashMap::new()),
            inbound_tx,
            inbound_rx: Mutex::new(inbound_rx),
            events,
            next_synthetic: AtomicU32::new(1),
            counters: Counters::default(),
        });
        (socket, StreamEvents(events_rx))
    }

    /// A quinn endpoint on this socket, configured for the stream path
    /// ([`endpoint_config`]); pass a [`server_config`] to accept connections. Must be
    /// called inside a Tokio runtime, where the endpoint's driver runs.
    pub fn endpoint(
        self: &Arc<Self>,
        server_config: Option<quinn::ServerConfig>,
    ) -> io::Result<quinn::Endpoint> {
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        quinn::Endpoint::new_with_abstract_socket(
            endpoint_config(),
            server_config,
            self.clone(),
            Arc::new(quinn::TokioRuntime),
        )
    }

    /// Carries datagrams for `peer` over `stream` from now on, until the stream ends.
    /// Must be called inside a Tokio runtime, where the link's task runs.
    pub fn attach<S>(&self, stream: S, peer: SocketAddr) -> Result<SocketAddr, AttachError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AttachError::NoRuntime)?;
        let peer = canonical(peer);
        let outgoing = {
            let mut links = lock(&self.links);
            if links.contains_key(&peer) {
                return Err(AttachError::AddressInUse(peer));
            }
            let outgoing = new_outgoing();
            links.insert(peer, outgoing.clone());
            outgoing
        };
        self.start(runtime, stream, peer, None, outgoing);
        Ok(peer)
    }

    /// Like [`attach`](Self::attach), with a fresh synthetic address from
    /// `127.255.0.0/16` (ports 1–65535), which it returns.
    pub fn attach_synthetic<S>(&self, stream: S) -> Result<SocketAddr, AttachError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.attach_from(stream, None)
    }

    fn attach_from<S>(
        &self,
        stream: S,
        remote: Option<SocketAddr>,
    ) -> Result<SocketAddr, AttachError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AttachError::NoRuntime)?;
        let (peer, outgoing) = {
            let mut links = lock(&self.links);
            let peer = (0..4096)
                .map(|_| synthetic_address(self.next_synthetic.fetch_add(1, Ordering::Relaxed)))
                .find(|peer| !links.contains_key(peer))
                .ok_or(AttachError::NoFreeAddress)?;
            let outgoing = new_outgoing();
            links.insert(peer, outgoing.clone());
            (peer, outgoing)
        };
        self.start(runtime, stream, peer, remote, outgoing);
        Ok(peer)
    }

    fn start<S>(
        &self,
        runtime: tokio::runtime::Handle,
        stream: S,
        peer: SocketAddr,
        remote: Option<SocketAddr>,
        outgoing: Arc<Outgoing>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let _ = self.events.send(StreamEvent::Attached { peer, remote });
        // The task holds the socket weakly: a link must not keep a dropped endpoint's
        // socket alive (dropping the socket detaches every link).
        let socket = self.me.clone();
        let inbound = self.inbound_tx.clone();
        runtime.spawn(async move {
            let (reader, writer) = tokio::io::split(stream);
            let reason = tokio::select! {
                reason = read_loop(reader, peer, inbound) => reason,
                reason = write_loop(&outgoing, writer) => reason,
                () = outgoing.cancel.notified() => CloseReason::Detached,
            };
            // Both halves drop here, which closes the stream (the peer reads its end).
            tracing::debug!(%peer, ?reason, "stream link closed");
            if let Some(socket) = socket.upgrade() {
                socket.unlink(peer, &outgoing, reason);
            }
        });
    }

    /// Forgets `peer`'s link, if it is still the one that ended, and says so.
    fn unlink(&self, peer: SocketAddr, outgoing: &Arc<Outgoing>, reason: CloseReason) {
        let mut links = lock(&self.links);
        if links
            .get(&peer)
            .is_some_and(|current| Arc::ptr_eq(current, outgoing))
        {
            links.remove(&peer);
        }
        drop(links);
        let _ = self.events.send(StreamEvent::Closed { peer, reason });
    }

    /// Ends the link of `peer` at once and closes its stream; datagrams still queued for
    /// it are lost, as on UDP (QUIC does not need them: the link's connection is over).
    /// Returns whether there was such a link.
    pub fn detach(&self, peer: SocketAddr) -> bool {
        match lock(&self.links).remove(&canonical(peer)) {
            Some(outgoing) => {
                outgoing.detach();
                true
            }
            None => false,
        }
    }

    /// The addresses of the live links.
    pub fn peers(&self) -> Vec<SocketAddr> {
        lock(&self.links).keys().copied().collect()
    }

    /// The socket's counters so far.
    pub fn stats(&self) -> StreamSocketStats {
        let c = &self.counters;
        StreamSocketStats {
            datagrams_sent: c.sent.load(Ordering::Relaxed),
            datagrams_received: c.received.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_no_link: c.dropped_no_link.load(Ordering::Relaxed),
            dropped_too_large: c.dropped_too_large.load(Ordering::Relaxed),
        }
    }

    /// The address quinn is shown for a datagram from `from`.
    fn shown(&self, from: SocketAddr) -> SocketAddr {
        match (self.local_addr, from) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => from,
        }
    }
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        for outgoing in lock(&self.links).values() {
            outgoing.detach();
        }
    }
}

fn new_outgoing() -> Arc<Outgoing> {
    Arc::new(Outgoing {
        queue: Mutex::new(BytesMut::new()),
        wake: Notify::new(),
        cancel: Notify::new(),
    })
}

/// The `n`th synthetic address: 16 bits in the last two octets of `127.255.0.0/16`,
/// 16 bits in the port (never 0).
fn synthetic_address(n: u32) -> SocketAddr {
    let [a, b, c, d] = n.to_be_bytes();
    let port = u16::from_be_bytes([a, b]).saturating_add(1);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 255, c, d)), port)
}

/// Reads frames from a link until it ends, and hands them to quinn's queue.
async fn read_loop<R>(reader: R, peer: SocketAddr, inbound: mpsc::Sender<Inbound>) -> CloseReason
where
    R: AsyncRead + Unpin,
{
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX_BYTES)
        .max_frame_length(MAX_DATAGRAM_BYTES)
        .new_codec();
    let mut frames = FramedRead::new(reader, codec);
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(datagram) => {
                let inbound_datagram = Inbound {
                    from: peer,
                    datagram: datagram.freeze(),
                };
                if inbound.send(inbound_datagram).await.is_err() {
                    // The socket is gone; its drop detaches the writer too.
                    return CloseReason::Detached;
                }
            }
            Err(error) => {
                let too_large = error
                    .get_ref()
                    .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
                return if too_large {
                    CloseReason::FrameTooLarge {
                        max: MAX_DATAGRAM_BYTES,
                    }
                } else {
                    error.into()
                };
            }
        }
    }
    CloseReason::Eof
}

/// Writes a link's queued frames, all that have gathered in one write, until a write
/// fails.
async fn write_loop<W>(outgoing: &Outgoing, mut writer: W) -> CloseReason
where
    W: AsyncWrite + Unpin,
{
    // Two buffers take turns: senders fill one while this writes the other, so the
    // steady state allocates nothing.
    let mut writing = BytesMut::new();
    loop {
        std::mem::swap(&mut *lock(&outgoing.queue), &mut writing);
        if writing.is_empty() {
            // A send between the swap and here leaves a permit, so no wake-up is lost.
            outgoing.wake.notified().await;
            continue;
        }
        if let Err(error) = writer.write_all(&writing).await {
            return error.into();
        }
        if let Err(error) = writer.flush().await {
            return error.into();
        }
        writing.clear();
    }
}

/// Always writable: [`StreamSocket::try_send`] never reports `WouldBlock`.
#[derive(Debug)]
struct NeverBlocks;

impl UdpPoller for NeverBlocks {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for StreamSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(NeverBlocks)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let contents = transmit.contents;
        let segment = transmit
            .segment_size
            .unwrap_or(contents.len())
            .clamp(1, MAX_DATAGRAM_BYTES);
        let count = contents.len().div_ceil(segment);
        let Some(outgoing) = lock(&self.links)
            .get(&canonical(transmit.destination))
            .cloned()
        else {
            self.counters
                .dropped_no_link
                .fetch_add(count as u64, Ordering::Relaxed);
            return Ok(());
        };
        let framed = contents.len() + count * LENGTH_PREFIX_BYTES;
        let mut queue = lock(&outgoing.queue);
        if queue.len() + framed > self.config.send_queue_bytes {
            drop(queue);
            self.counters
                .dropped_queue_full
                .fetch_add(count as u64, Ordering::Relaxed);
            return Ok(());
        }
        let was_empty = queue.is_empty();
        // The prefix is written here rather than by `LengthDelimitedCodec`'s encoder,
        // which takes an owned `Bytes`: that would cost an allocation and a second copy
        // per datagram. The format is the codec's default, which decodes it.
        queue.reserve(framed);
        for datagram in contents.chunks(segment) {
            // At most MAX_DATAGRAM_BYTES, so it fits the prefix.
            queue.put_u32(datagram.len() as u32);
            queue.extend_from_slice(datagram);
        }
        drop(queue);
        if was_empty {
            outgoing.wake.notify_one();
        }
        self.counters
            .sent
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = lock(&self.inbound_rx);
        let slots = bufs.len().min(meta.len());
        let mut filled = 0;
        while filled < slots {
            let next = if filled == 0 {
                match inbound.poll_recv(cx) {
                    Poll::Ready(Some(next)) => next,
                    // The socket holds a sender, so the queue cannot close while it lives.
                    Poll::Ready(None) => {
                        return Poll::Ready(Err(io::Error::other("stream socket closed")));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                match inbound.try_recv() {
                    Ok(next) => next,
                    Err(_) => break,
                }
            };
            let len = next.datagram.len();
            let Some(buf) = bufs[filled].get_mut(..len) else {
                self.counters
                    .dropped_too_large
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            buf.copy_from_slice(&next.datagram);
            let slot = &mut meta[filled];
            slot.addr = self.shown(next.from);
            slot.len = len;
            slot.stride = len;
            slot.ecn = None;
            slot.dst_ip = Some(self.local_addr.ip());
            filled += 1;
        }
        self.counters
            .received
            .fetch_add(filled as u64, Ordering::Relaxed);
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn max_transmit_segments(&self) -> usize {
        TRANSMIT_SEGMENTS
    }

    fn may_fragment(&self) -> bool {
        // Frames arrive whole or not at all; this also lets quinn run MTU discovery when
        // a caller keeps quinn's default transport config.
        false
    }
}

/// Accepts TCP connections on `listener` and attaches each to `socket` under a synthetic
/// address (announced with its TCP peer in [`StreamEvent::Attached`]), so a worker takes
/// QUIC over TCP beside its UDP endpoint. Spawn it, and abort the task to stop listening;
/// it does not keep the socket alive, and returns at the first connection after the
/// socket is gone. Errors of one connection are skipped; others (out of file descriptors)
/// are logged and retried after a short pause.
pub async fn serve_tcp(listener: tokio::net::TcpListener, socket: Arc<StreamSocket>) {
    let weak = Arc::downgrade(&socket);
    drop(socket);
    loop {
        let accepted = listener.accept().await;
        let Some(socket) = weak.upgrade() else {
            return;
        };
        match accepted {
            Ok((stream, remote)) => {
                // Small QUIC packets (acks, short calls) must not wait for Nagle.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%remote, "TCP_NODELAY: {error}");
                }
                if let Err(error) = socket.attach_from(stream, Some(remote)) {
                    tracing::warn!(%remote, "QUIC-over-TCP connection dropped: {error}");
                }
            }
            Err(error) if is_per_connection(&error) => {
                tracing::debug!("accept: {error}");
            }
            Err(error) => {
                tracing::warn!("accepting QUIC-over-TCP connections: {error}");
                drop(socket);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Endpoint settings for the stream path: quinn may receive datagrams up to
/// [`MAX_DATAGRAM_BYTES`] (its default, spelled out because the link limit relies on it).
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    // In range by construction (1200..=65527), so this cannot fail; were it to, the
    // default — the same value — stays.
    let _ = config.max_udp_payload_size(MAX_DATAGRAM_BYTES as u16);
    config
}

/// kt's QUIC settings for the stream path: packets of [`STREAM_MTU`] bytes from the
/// first, then MTU discovery up to [`MAX_DATAGRAM_BYTES`] once the handshake is done.
/// Use it for connections over a [`StreamSocket`] only: on a real UDP path such packets
/// would be lost.
pub fn transport_config() -> quinn::TransportConfig {
    transport_config_with_mtu(STREAM_MTU)
}

/// [`transport_config`] starting with packets of `mtu` bytes (clamped to
/// 1200..=[`MAX_STREAM_MTU`]), for measuring or for a stream path that must keep
/// packets small (turn discovery off with `mtu_discovery_config(None)`).
pub fn transport_config_with_mtu(mtu: u16) -> quinn::TransportConfig {
    let mtu = mtu.clamp(1200, MAX_STREAM_MTU);
    let mut config = super::quic::base_transport_config();
    // Cubic's default first window (14,720 bytes) can be smaller than one such packet,
    // and quinn would then never send the first one: start with ten packets' worth.
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(10 * u64::from(mtu));
    // Discovery only ever probes upwards from `min_mtu`, with short-header packets (no
    // length field), so it can go past MAX_STREAM_MTU; the black-hole detector (which a
    // burst of drops from a full send queue can trip) falls back to `mtu`, never lower.
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_DATAGRAM_BYTES as u16);
    config
        .initial_mtu(mtu)
        .min_mtu(mtu)
        .mtu_discovery_config(Some(discovery))
        .congestion_controller_factory(Arc::new(cubic));
    config
}

/// `identity`'s server config ([`Identity::server_config`]) with [`transport_config`].
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, TransportError> {
    let mut config = identity.server_config()?;
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// `identity`'s client config ([`Identity::client_config`]) with [`transport_config`].
pub fn client_config(identity: &Identity) -> Result<quinn::ClientConfig, TransportError> {
    let mut config = identity.client_config()?;
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tls::{ClusterCa, SERVER_NAME};

    #[test]
    fn synthetic_addresses_stay_in_their_range_and_never_use_port_zero() {
        for n in [0, 1, 255, 256, 65_535, 65_536, u32::MAX - 1, u32::MAX] {
            let address = synthetic_address(n);
            let SocketAddr::V4(v4) = address else {
                panic!("{address} is not IPv4");
            };
            assert_eq!(v4.ip().octets()[..2], [127, 255]);
            assert_ne!(v4.port(), 0);
        }
        assert_ne!(synthetic_address(1), synthetic_address(1 << 16 | 1));
    }

    /// The server side of mutual TLS over the stream path: a client that trusts the
    /// server but presents a certificate from another CA is refused by the server.
    #[tokio::test]
    async fn a_client_certificate_from_another_ca_is_refused_by_the_server() {
        let ca = ClusterCa::generate().expect("a CA");
        let server_identity = ca.issue("worker").expect("a leaf");
        let mut stranger = ClusterCa::generate()
            .expect("a CA")
            .issue("stranger")
            .expect("a leaf");
        stranger.ca_der = server_identity.ca_der.clone();

        let server_addr: SocketAddr = (Ipv4Addr::new(127, 255, 255, 254), 1).into();
        let (server_socket, _) = StreamSocket::new(server_addr);
        let (client_socket, _) = StreamSocket::new((Ipv4Addr::new(127, 255, 255, 253), 1).into());
        let (near, far) = tokio::io::duplex(64 << 10);
        client_socket.attach(near, server_addr).expect("attach");
        let client_peer = server_socket.attach_synthetic(far).expect("attach");
        let server = server_socket
            .endpoint(Some(server_config(&server_identity).expect("config")))
            .expect("server endpoint");
        let client = client_socket.endpoint(None).expect("client endpoint");
        let connecting = client
            .connect_with(
                client_config(&stranger).expect("config"),
                server_addr,
                SERVER_NAME,
            )
            .expect("connect");
        let server_side = async {
            let incoming = server.accept().await.expect("an incoming connection");
            assert_eq!(incoming.remote_address(), client_peer);
            incoming.await
        };
        let (client_side, server_side) = tokio::join!(
            async {
                // The client may finish its side of the handshake before the server has
                // checked its certificate; the refusal then arrives as the close.
                let conn = connecting.await?;
                Err::<(), _>(conn.closed().await)
            },
            server_side
        );
        assert!(server_side.is_err(), "the server must refuse the stranger");
        assert!(client_side.is_err());
    }
}
