//! A peer that announces huge frames and never sends them costs the receiver nothing:
//! a worker under an address-space limit (`ulimit -v`) keeps serving after an
//! authenticated peer sent 4-byte prefixes announcing 100 MiB frames on 500 streams.
//! (The decoder used to reserve each announced length at once: 500 × 100 MiB of
//! address space, and the worker aborted with `memory allocation failed`.) And one that
//! really sends parts of large frames on many streams gets no more of them read than
//! its connection's budget admits.

mod support;

use std::sync::Arc;

use kt_transport::wire::frame::{Frame, PROTOCOL_VERSION, encode_frame};
use kt_transport::wire::tls::SERVER_NAME;
use support::Accumulator;

/// The most a wait for the worker's state may take before the test fails.
const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reports the worker's frames held back by their connection's budget.
#[kt::actor]
pub struct WireGauge;

#[kt::actor]
impl WireGauge {
    pub fn new() -> Self {
        WireGauge
    }

    pub fn frames_waiting(&self) -> usize {
        kt_transport::wire::budget::frames_waiting()
    }
}

/// An authenticated connection to the node serving `actor`, as any process holding the
/// machine CA could make, and the `Open` frame of a call stream to that actor.
async fn hostile_connection(actor: &kt::ErasedActor) -> (quinn::Connection, bytes::BytesMut) {
    let address = actor.route().address().unwrap();
    let worker: std::net::SocketAddr = address.node.parse().unwrap();
    let identity = kt_transport::wire::directory::machine_ca()
        .unwrap()
        .issue("hostile but authenticated")
        .unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(identity.client_config().unwrap());
    let conn = endpoint
        .connect(worker, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let mut open = bytes::BytesMut::new();
    encode_frame(
        &Frame::Open {
            version: PROTOCOL_VERSION,
            actor_id: address.label.id,
            host: None,
        },
        &mut open,
    )
    .unwrap();
    (conn, open)
}

/// The worker's current address-space size, from `/proc`.
fn vm_size_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[kt::test]
async fn announced_frame_lengths_reserve_nothing_in_a_worker_under_an_address_space_limit() {
    let actor = Accumulator::spawn(1)
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    let pid = actor.pid().await.unwrap();
    // 2 GiB above what the worker maps now: far less than 500 × 100 MiB.
    let limit = vm_size_bytes(pid) + (2 << 30);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit(2) on a child process this test spawned, with a valid rlimit.
    let set = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_AS, &rlimit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());

    let (conn, open) = hostile_connection(&actor.raw().erase()).await;
    let mut streams = Vec::new();
    for _ in 0..500 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&open).await.unwrap();
        send.write_all(&(100u32 << 20).to_be_bytes()).await.unwrap();
        streams.push((send, recv));
    }
    // The worker has read every prefix once a call on a later stream is answered.
    assert_eq!(actor.add(2).await.unwrap(), 3);
    assert_eq!(actor.add(3).await.unwrap(), 6, "the worker keeps serving");
    assert!(actor.is_alive());
    drop(streams);
    conn.close(0u32.into(), b"done");
}

#[kt::test]
async fn frames_past_a_connections_budget_wait_unread_until_their_stream_goes() {
    const MIB: usize = 1 << 20;
    // A worker that takes messages of up to 4 MiB and lets one connection's unfinished
    // frames hold 5 MiB: one 4 MiB frame at a time.
    let compute = kt::Compute::new()
        .env("KT_MAX_MESSAGE_BYTES", (4 * MIB).to_string())
        .env("KT_MAX_CONNECTION_BYTES", (5 * MIB).to_string());
    let gauge = WireGauge::spawn()
        .compute(compute)
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    assert_eq!(gauge.frames_waiting().await.unwrap(), 0);

    // Eight streams, each with the first MiB of a 4 MiB call frame.
    let (conn, open) = hostile_connection(&gauge.raw().erase()).await;
    let mut part = ((4 * MIB) as u32).to_be_bytes().to_vec();
    part.resize(4 + MIB, 0xAB);
    let mut streams = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&open).await.unwrap();
        send.write_all(&part).await.unwrap();
        streams.push((send, recv));
    }
    // One frame is admitted; the other seven wait, unread. The driver's own calls, on
    // a connection of their own, go on meanwhile.
    let seven_wait = async { while gauge.frames_waiting().await.unwrap() < 7 {} };
    tokio::time::timeout(WAIT, seven_wait)
        .await
        .expect("seven frames wait for the budget");
    assert_eq!(gauge.frames_waiting().await.unwrap(), 7);

    // Streams that go stop waiting, and their shares go back. The streams end (dropped:
    // finished and stopped) while the connection stays open, so QUIC delivers their ends
    // reliably: closing the connection at once could lose its one CONNECTION_CLOSE behind
    // the megabytes still in flight, and the worker would learn of it only at its idle
    // timeout.
    drop(streams);
    let none_wait = async { while gauge.frames_waiting().await.unwrap() > 0 {} };
    tokio::time::timeout(WAIT, none_wait)
        .await
        .expect("no frame waits once its stream is gone");
    assert!(gauge.is_alive());
    conn.close(0u32.into(), b"done");
}
