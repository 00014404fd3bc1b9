//! QUIC over reliable byte streams (`kt_transport::wire::stream_socket`): mutually
//! authenticated connections over in-memory pipes and over TCP loopback, many links on
//! one socket, malformed frames, and a measurement against plain QUIC over UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kt_transport::wire::stream_socket::{
    self, AttachError, CloseReason, StreamEvent, StreamEvents, StreamSocket,
};
use kt_transport::wire::tls::{ClusterCa, Identity, SERVER_NAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

/// The address the server's link has on the client's socket.
const SERVER: &str = "127.255.255.254:1";
/// The address the client's link has on the server's socket (duplex tests).
const CLIENT: &str = "127.255.255.253:1";

/// Echoes every bidirectional stream the peer opens on `conn`.
async fn echo_streams(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut recv, &mut send).await;
            let _ = send.finish();
        });
    }
}

/// Sends `data` on a new stream of `conn` and returns what the peer echoed.
async fn echo(conn: &quinn::Connection, data: Vec<u8>) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.expect("open a stream");
    let writer = tokio::spawn(async move {
        send.write_all(&data).await.expect("write");
        send.finish().expect("finish");
    });
    let back = recv.read_to_end(usize::MAX).await.expect("read the echo");
    writer.await.expect("the writer");
    back
}

/// `count` 16-byte messages, each its own write, echoed one by one and checked in order.
async fn small_messages_in_order(conn: &quinn::Connection, count: u64) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open a stream");
    let writer = tokio::spawn(async move {
        for seq in 0..count {
            let mut message = [0u8; 16];
            message[..8].copy_from_slice(&seq.to_be_bytes());
            message[8..].copy_from_slice(&(!seq).to_be_bytes());
            send.write_all(&message).await.expect("write");
        }
        send.finish().expect("finish");
    });
    for seq in 0..count {
        let mut message = [0u8; 16];
        recv.read_exact(&mut message).await.expect("read");
        assert_eq!(
            message[..8],
            seq.to_be_bytes(),
            "message {seq} out of order"
        );
        assert_eq!(
            message[8..],
            (!seq).to_be_bytes(),
            "message {seq} corrupted"
        );
    }
    writer.await.expect("the writer");
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

struct Identities {
    server: Identity,
    client: Identity,
}

fn identities() -> Identities {
    let ca = ClusterCa::generate().expect("a CA");
    Identities {
        server: ca.issue("worker").expect("a leaf"),
        client: ca.issue("driver").expect("a leaf"),
    }
}

/// Both ends of one QUIC connection over an in-memory pipe.
struct DuplexPair {
    client_socket: Arc<StreamSocket>,
    server_socket: Arc<StreamSocket>,
    server_events: StreamEvents,
    client_conn: quinn::Connection,
    server_conn: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

async fn duplex_pair(
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
) -> DuplexPair {
    duplex_pair_on(addr(CLIENT), server_config, client_config).await
}

/// [`duplex_pair`] with the client's socket named `client_local`.
async fn duplex_pair_on(
    client_local: SocketAddr,
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
) -> DuplexPair {
    let (server_socket, server_events) = StreamSocket::new(addr(SERVER));
    let (client_socket, _) = StreamSocket::new(client_local);
    let (near, far) = tokio::io::duplex(256 << 10);
    client_socket.attach(near, addr(SERVER)).expect("attach");
    server_socket.attach(far, addr(CLIENT)).expect("attach");
    let server = server_socket
        .endpoint(Some(server_config))
        .expect("server endpoint");
    let client = client_socket.endpoint(None).expect("client endpoint");
    let connecting = client
        .connect_with(client_config, addr(SERVER), SERVER_NAME)
        .expect("connect");
    let handshakes = async {
        tokio::join!(connecting, async {
            server.accept().await.expect("an incoming connection").await
        })
    };
    // A guard against a hang, not a synchronization: handshakes take milliseconds.
    let (client_conn, server_conn) = tokio::time::timeout(Duration::from_secs(30), handshakes)
        .await
        .expect("handshakes within 30 s");
    DuplexPair {
        client_socket,
        server_socket,
        server_events,
        client_conn: client_conn.expect("client handshake"),
        server_conn: server_conn.expect("server handshake"),
        _endpoints: (server, client),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplex_pipe_carries_mutual_tls_quic_both_ways_large_and_small_in_order() {
    let ids = identities();
    let pair = duplex_pair(
        stream_socket::server_config(&ids.server).expect("server config"),
        stream_socket::client_config(&ids.client).expect("client config"),
    )
    .await;
    assert_eq!(pair.server_conn.remote_address(), addr(CLIENT));
    tokio::spawn(echo_streams(pair.server_conn.clone()));
    tokio::spawn(echo_streams(pair.client_conn.clone()));

    // Client → server → client, then server → client → server.
    let big = pattern(10 << 20);
    assert!(
        echo(&pair.client_conn, big.clone()).await == big,
        "10 MB echo"
    );
    assert_eq!(echo(&pair.server_conn, b"hello".to_vec()).await, b"hello");
    small_messages_in_order(&pair.client_conn, 5_000).await;
    small_messages_in_order(&pair.server_conn, 5_000).await;

    let stats = pair.client_socket.stats();
    assert!(stats.datagrams_sent > 0 && stats.datagrams_received > 0);
    assert_eq!(stats.dropped_no_link, 0);
    assert_eq!(pair.server_socket.peers(), vec![addr(CLIENT)]);
}

#[tokio::test]
async fn quinns_default_transport_config_works_over_a_stream_too() {
    // 1200-byte packets and MTU discovery, as a caller that skips the stream configs gets.
    let ids = identities();
    let pair = duplex_pair(
        ids.server.server_config().expect("server config"),
        ids.client.client_config().expect("client config"),
    )
    .await;
    tokio::spawn(echo_streams(pair.server_conn.clone()));
    let data = pattern(1 << 20);
    assert!(echo(&pair.client_conn, data.clone()).await == data);
}

#[tokio::test]
async fn a_socket_named_by_an_ipv6_address_reaches_ipv4_peers() {
    // quinn shows such an endpoint IPv4 peers as IPv4-mapped IPv6 addresses, both ways.
    let ids = identities();
    let pair = duplex_pair_on(
        addr("[::1]:1"),
        stream_socket::server_config(&ids.server).expect("server config"),
        stream_socket::client_config(&ids.client).expect("client config"),
    )
    .await;
    tokio::spawn(echo_streams(pair.server_conn.clone()));
    assert_eq!(echo(&pair.client_conn, b"mapped".to_vec()).await, b"mapped");
    assert_eq!(
        pair.client_conn.remote_address(),
        addr("[::ffff:127.255.255.254]:1")
    );
    assert_eq!(pair.client_socket.stats().dropped_no_link, 0);
}

#[tokio::test]
async fn one_address_takes_one_live_link() {
    let (socket, mut events) = StreamSocket::new(addr(SERVER));
    let (first, _keep) = tokio::io::duplex(64);
    let (second, _keep_too) = tokio::io::duplex(64);
    socket.attach(first, addr(CLIENT)).expect("attach");
    assert_eq!(
        socket.attach(second, addr(CLIENT)),
        Err(AttachError::AddressInUse(addr(CLIENT)))
    );
    assert!(socket.detach(addr(CLIENT)));
    assert!(matches!(
        events.next().await,
        Some(StreamEvent::Attached { .. })
    ));
    assert_eq!(
        events.next().await,
        Some(StreamEvent::Closed {
            peer: addr(CLIENT),
            reason: CloseReason::Detached
        })
    );
    // Once the link is gone, the address can be used again.
    let (third, _keep_three) = tokio::io::duplex(64);
    assert_eq!(socket.attach(third, addr(CLIENT)), Ok(addr(CLIENT)));
}

#[test]
fn attaching_outside_a_runtime_is_an_error_not_a_panic() {
    let (socket, _) = StreamSocket::new(addr(SERVER));
    let (stream, _keep) = tokio::io::duplex(64);
    assert_eq!(socket.attach_synthetic(stream), Err(AttachError::NoRuntime));
    assert!(socket.endpoint(None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tcp_carries_two_clients_at_once_on_distinct_addresses() {
    let ids = identities();
    let (server_socket, mut server_events) = StreamSocket::new(addr(SERVER));
    let server = server_socket
        .endpoint(Some(
            stream_socket::server_config(&ids.server).expect("config"),
        ))
        .expect("server endpoint");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local address");
    tokio::spawn(stream_socket::serve_tcp(listener, server_socket.clone()));
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    echo_streams(conn).await;
                }
            });
        }
    });

    let mut clients = Vec::new();
    for name in ["client 1", "client 2"] {
        let (socket, _) = StreamSocket::new(addr(CLIENT));
        let tcp = tokio::net::TcpStream::connect(port).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let tcp_local = tcp.local_addr().expect("local address");
        socket.attach(tcp, addr(SERVER)).expect("attach");
        let endpoint = socket.endpoint(None).expect("client endpoint");
        clients.push((name, socket, endpoint, tcp_local));
    }
    // Both handshakes and both transfers run at the same time.
    let runs = clients.iter().map(|(name, _, endpoint, _)| {
        let config = stream_socket::client_config(&ids.client).expect("config");
        async move {
            let conn = endpoint
                .connect_with(config, addr(SERVER), SERVER_NAME)
                .expect("connect")
                .await
                .expect("handshake");
            let data = pattern(2 << 20);
            assert!(echo(&conn, data.clone()).await == data, "{name}: echo");
            small_messages_in_order(&conn, 2_000).await;
            conn
        }
    });
    let conns = futures_util::future::join_all(runs).await;

    let mut attached = Vec::new();
    while attached.len() < 2 {
        match server_events.next().await.expect("an event") {
            StreamEvent::Attached { peer, remote } => attached.push((peer, remote)),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_ne!(attached[0].0, attached[1].0, "distinct peer addresses");
    let mut remotes: Vec<_> = attached.iter().filter_map(|(_, remote)| *remote).collect();
    let mut tcp_locals: Vec<_> = clients.iter().map(|client| client.3).collect();
    remotes.sort();
    tcp_locals.sort();
    assert_eq!(remotes, tcp_locals, "each link names its TCP peer");
    let mut peers = server_socket.peers();
    peers.sort();
    let mut expected: Vec<_> = attached.iter().map(|(peer, _)| *peer).collect();
    expected.sort();
    assert_eq!(peers, expected);
    for conn in conns {
        conn.close(0u32.into(), b"done");
    }
}

#[tokio::test]
async fn a_peer_of_another_ca_is_refused_over_a_stream() {
    let ids = identities();
    let stranger = ClusterCa::generate()
        .expect("a CA")
        .issue("stranger")
        .expect("a leaf");
    let (server_socket, _) = StreamSocket::new(addr(SERVER));
    let (client_socket, _) = StreamSocket::new(addr(CLIENT));
    let (near, far) = tokio::io::duplex(64 << 10);
    client_socket.attach(near, addr(SERVER)).expect("attach");
    server_socket.attach(far, addr(CLIENT)).expect("attach");
    let server = server_socket
        .endpoint(Some(
            stream_socket::server_config(&ids.server).expect("config"),
        ))
        .expect("server endpoint");
    let client = client_socket.endpoint(None).expect("client endpoint");
    let connecting = client
        .connect_with(
            stream_socket::client_config(&stranger).expect("config"),
            addr(SERVER),
            SERVER_NAME,
        )
        .expect("connect");
    let (client_side, server_side) = tokio::join!(connecting, async {
        server.accept().await.expect("an incoming connection").await
    });
    assert!(client_side.is_err(), "the stranger must not connect");
    assert!(
        server_side.is_err(),
        "the server must not accept the stranger"
    );
}

#[tokio::test]
async fn a_malformed_length_prefix_closes_only_that_link() {
    let ids = identities();
    let mut pair = duplex_pair(
        stream_socket::server_config(&ids.server).expect("server config"),
        stream_socket::client_config(&ids.client).expect("client config"),
    )
    .await;
    tokio::spawn(echo_streams(pair.server_conn.clone()));
    assert!(matches!(
        pair.server_events.next().await,
        Some(StreamEvent::Attached { .. })
    ));

    // A second link on the server's socket, whose far end declares a datagram one byte
    // over the limit.
    let (mut raw, far) = tokio::io::duplex(4096);
    let bad = pair.server_socket.attach_synthetic(far).expect("attach");
    assert!(matches!(
        pair.server_events.next().await,
        Some(StreamEvent::Attached { peer, remote: None }) if peer == bad
    ));
    let declared = (stream_socket::MAX_DATAGRAM_BYTES as u32 + 1).to_be_bytes();
    raw.write_all(&declared).await.expect("write");
    assert_eq!(
        pair.server_events.next().await,
        Some(StreamEvent::Closed {
            peer: bad,
            reason: CloseReason::FrameTooLarge {
                max: stream_socket::MAX_DATAGRAM_BYTES
            },
        })
    );
    // The bad link's stream is closed from the socket's side...
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).await.expect("read to the end");
    assert!(rest.is_empty());
    assert_eq!(pair.server_socket.peers(), vec![addr(CLIENT)]);
    // ...and the other link keeps working.
    assert_eq!(
        echo(&pair.client_conn, b"still here".to_vec()).await,
        b"still here"
    );
}

#[tokio::test]
async fn a_link_that_ends_is_reported_at_once_so_its_connection_can_be_closed() {
    let ids = identities();
    let mut pair = duplex_pair(
        stream_socket::server_config(&ids.server).expect("server config"),
        stream_socket::client_config(&ids.client).expect("client config"),
    )
    .await;
    assert!(matches!(
        pair.server_events.next().await,
        Some(StreamEvent::Attached { .. })
    ));
    assert!(pair.client_socket.detach(addr(SERVER)));
    assert!(!pair.client_socket.detach(addr(SERVER)), "already gone");
    // The client's side shuts its stream down; the server reads the end.
    assert_eq!(
        pair.server_events.next().await,
        Some(StreamEvent::Closed {
            peer: addr(CLIENT),
            reason: CloseReason::Eof,
        })
    );
    // What an owner does with the event: close the connection with that address.
    assert_eq!(pair.server_conn.remote_address(), addr(CLIENT));
    pair.server_conn.close(0u32.into(), b"stream ended");
    assert!(matches!(
        pair.server_conn.closed().await,
        quinn::ConnectionError::LocallyClosed
    ));
    assert!(pair.client_socket.peers().is_empty());
    assert!(pair.server_socket.peers().is_empty());
}

// ---------------------------------------------------------------------------------------
// Measurement (not a pass/fail test): run with
//   cargo test -p kt-transport --release --test stream_socket -- --ignored --nocapture

struct Figures {
    rtt: Duration,
    throughput_mb_s: f64,
}

/// Median round trip of 16-byte messages on one stream, and the rate of a 100 MB
/// transfer (until the receiver has counted every byte and said so).
async fn measure(conn: &quinn::Connection) -> Figures {
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    let mut samples = Vec::new();
    let mut message = [7u8; 16];
    for _ in 0..3_000 {
        let start = Instant::now();
        send.write_all(&message).await.expect("write");
        recv.read_exact(&mut message).await.expect("read");
        samples.push(start.elapsed());
    }
    send.finish().expect("finish");
    samples.sort();
    let rtt = samples[samples.len() / 2];

    let total = 100usize << 20;
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    let chunk = bytes::Bytes::from(vec![1u8; 1 << 20]);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..(total >> 20) {
            send.write_chunk(chunk.clone()).await.expect("write");
        }
        send.finish().expect("finish");
    });
    let mut count = [0u8; 8];
    recv.read_exact(&mut count).await.expect("the count");
    let elapsed = start.elapsed();
    writer.await.expect("writer");
    assert_eq!(u64::from_be_bytes(count), total as u64);
    Figures {
        rtt,
        throughput_mb_s: total as f64 / elapsed.as_secs_f64() / 1e6,
    }
}

/// Serves [`measure`]: echoes the first stream, counts the second.
async fn measured(incoming: quinn::Incoming) {
    let Ok(conn) = incoming.await else { return };
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let _ = tokio::io::copy(&mut recv, &mut send).await;
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let mut total = 0u64;
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, false).await {
        total += chunk.bytes.len() as u64;
    }
    let _ = send.write_all(&total.to_be_bytes()).await;
    let _ = send.finish();
    let _ = conn.closed().await;
}

async fn over_udp(ids: &Identities) -> Figures {
    let server = quinn::Endpoint::server(
        ids.server.server_config().expect("config"),
        addr("127.0.0.1:0"),
    )
    .expect("server");
    let server_addr = server.local_addr().expect("address");
    let accept = tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            measured(incoming).await;
        }
    });
    let client = quinn::Endpoint::client(addr("127.0.0.1:0")).expect("client");
    let conn = client
        .connect_with(
            ids.client.client_config().expect("config"),
            server_addr,
            SERVER_NAME,
        )
        .expect("connect")
        .await
        .expect("handshake");
    let figures = measure(&conn).await;
    conn.close(0u32.into(), b"done");
    accept.abort();
    figures
}

async fn over_tcp(
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
) -> (Figures, [stream_socket::StreamSocketStats; 2]) {
    let (server_socket, _) = StreamSocket::new(addr(SERVER));
    let server = server_socket.endpoint(Some(server_config)).expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address");
    let serving = tokio::spawn(stream_socket::serve_tcp(listener, server_socket.clone()));
    let accept = tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            measured(incoming).await;
        }
    });
    let (client_socket, _) = StreamSocket::new(addr(CLIENT));
    let tcp = tokio::net::TcpStream::connect(port).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    client_socket.attach(tcp, addr(SERVER)).expect("attach");
    let client = client_socket.endpoint(None).expect("client");
    let conn = client
        .connect_with(client_config, addr(SERVER), SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let figures = measure(&conn).await;
    conn.close(0u32.into(), b"done");
    accept.abort();
    serving.abort();
    (figures, [client_socket.stats(), server_socket.stats()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it in release with --nocapture"]
async fn measure_stream_socket_against_udp() {
    let ids = identities();
    let report = |what: &str, figures: &Figures| {
        println!(
            "{what:<40} rtt(16 B, median) {:>6.1} µs   100 MB: {:>7.1} MB/s",
            figures.rtt.as_secs_f64() * 1e6,
            figures.throughput_mb_s
        );
    };
    // Fixed packet sizes: the stream path's config without MTU discovery.
    let with_mtu = |mtu: u16| {
        let mut transport = stream_socket::transport_config_with_mtu(mtu);
        transport.mtu_discovery_config(None);
        let transport = Arc::new(transport);
        let mut server = ids.server.server_config().expect("config");
        server.transport_config(transport.clone());
        let mut client = ids.client.client_config().expect("config");
        client.transport_config(transport);
        (server, client)
    };
    for _ in 0..2 {
        report("plain quinn over UDP loopback", &over_udp(&ids).await);
        let default_mtu = (
            ids.server.server_config().expect("config"),
            ids.client.client_config().expect("config"),
        );
        let runs = [
            ("quinn default (1200 + discovery)", default_mtu),
            ("MTU 4096 fixed", with_mtu(4096)),
            ("MTU 16384 fixed", with_mtu(16384)),
            (
                "transport_config(): 16384, discovery",
                (
                    stream_socket::server_config(&ids.server).expect("config"),
                    stream_socket::client_config(&ids.client).expect("config"),
                ),
            ),
        ];
        for (what, (server, client)) in runs {
            let (figures, [client_stats, server_stats]) = over_tcp(server, client).await;
            report(&format!("stream socket over TCP, {what}"), &figures);
            println!(
                "    client sent {} dropped {}; server sent {} dropped {}",
                client_stats.datagrams_sent,
                client_stats.dropped_queue_full,
                server_stats.datagrams_sent,
                server_stats.dropped_queue_full
            );
        }
    }
}
