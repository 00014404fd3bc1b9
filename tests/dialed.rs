//! Workers the driver dials (the path pods take): a worker started with its config and
//! identity in a directory listens on its own address, and the driver attaches to it.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;

use kt::prelude::*;
use kt_transport::worker::dialed::{self, Prepared};
use support::Accumulator;

/// A UDP port free on `ip` right now.
fn free_port(ip: &str) -> u16 {
    let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind");
    socket.local_addr().expect("addr").port()
}

/// Starts this test binary as a dialed worker listening on `ip`, as a pod would be.
fn start_worker(prepared: &Prepared, ip: &str, dir: &std::path::Path) -> tokio::process::Child {
    let files = &prepared.files;
    std::fs::write(dir.join(kt_transport::worker::CONFIG_FILE), &files.config).unwrap();
    std::fs::write(dir.join(kt_transport::worker::CA_FILE), &files.ca_pem).unwrap();
    std::fs::write(dir.join(kt_transport::worker::CERT_FILE), &files.cert_pem).unwrap();
    std::fs::write(dir.join(kt_transport::worker::KEY_FILE), &files.key_pem).unwrap();
    let command = kt_transport::worker_command().unwrap();
    tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env(kt_transport::worker::WORKER_ENV, "1")
        .env(kt_transport::worker::WORKER_DIR_ENV, dir)
        .env(kt_transport::worker::LISTEN_IP_ENV, ip)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Attaches, retrying while the worker is still starting (nothing listens yet).
async fn attach_when_up(address: SocketAddr, token: u64) -> kt::Result<dialed::Attached> {
    loop {
        match dialed::attach(address, token, None, std::time::Duration::from_secs(1)).await {
            Err(Error::Unavailable { .. }) => tokio::task::yield_now().await,
            other => return other,
        }
    }
}

/// Prepares and starts a dialed worker hosting `Accumulator::new(start)` on `ip`: its
/// token, address, process and worker directory.
async fn dialed_accumulator(
    ip: &str,
    start: u64,
) -> (
    Prepared,
    SocketAddr,
    tokio::process::Child,
    tempfile::TempDir,
) {
    let port = free_port(ip);
    let args = kt::codec::encode(&(start,), "args").unwrap();
    let prepared = dialed::prepare(
        <Accumulator as kt::Actor>::TYPE_NAME,
        args.into(),
        SpawnOptions::default(),
        port,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = start_worker(&prepared, ip, dir.path());
    let address = format!("{ip}:{port}").parse().unwrap();
    (prepared, address, worker, dir)
}

#[kt::test]
async fn a_dialed_worker_serves_its_driver_and_exits_when_released() {
    let ip = "127.0.1.77";
    let (prepared, address, mut worker, _dir) = dialed_accumulator(ip, 40).await;

    // A driver with the wrong token is refused and the worker keeps waiting.
    let wrong = loop {
        match dialed::attach(
            address,
            prepared.token ^ 1,
            None,
            std::time::Duration::from_secs(1),
        )
        .await
        {
            Err(Error::Unavailable { message, .. }) if message.contains("waits") => break message,
            Err(Error::Unavailable { .. }) => tokio::task::yield_now().await,
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    };
    assert!(wrong.contains("wrong token"), "{wrong}");

    let attached = attach_when_up(address, prepared.token).await.unwrap();
    let actor = kt::backend::Placed::elsewhere(attached.handle(true))
        .into_ref::<Accumulator>()
        .unwrap();
    assert_eq!(actor.add(2).await.unwrap(), 42);
    assert_eq!(actor.total().await.unwrap(), 42);
    // Dropping the last owning handle releases the actor: the worker exits cleanly.
    drop(actor);
    let status = worker.wait().await.unwrap();
    assert!(status.success(), "{status}");
}

#[kt::test]
async fn the_backend_reports_a_dialed_workers_death_to_waiting_calls() {
    let ip = "127.0.1.78";
    let (prepared, address, mut worker, _dir) = dialed_accumulator(ip, 0).await;
    let attached = attach_when_up(address, prepared.token).await.unwrap();
    let death = attached.death.clone();
    let actor = kt::backend::Placed::elsewhere(attached.handle(true))
        .into_ref::<Accumulator>()
        .unwrap();
    assert_eq!(actor.add(1).await.unwrap(), 1);
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    // What a pod watcher would say.
    death.died(DeathCause::OomKilled).await;
    assert!(matches!(
        actor.total().await,
        Err(Error::ActorDied {
            cause: DeathCause::OomKilled,
            ..
        })
    ));
}
