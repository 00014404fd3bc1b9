//! Remote-only behaviour of the local-process backend: death seen from the process
//! itself, handles that travel peer to peer, and no orphans when a driver is killed.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kt::prelude::*;
use support::{Accumulator, Counter, Relay, exited, open_gate, probe};
use tokio::io::AsyncBufReadExt;

fn local() -> Arc<dyn kt::Placement> {
    Arc::new(kt::LocalProcess::new())
}

#[kt::test]
async fn a_worker_killed_with_sigkill_fails_waiting_calls_with_its_signal() {
    let tag = "remote/sigkill".to_string();
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .on(local())
        .await
        .unwrap();
    let pid = c.pid().await.unwrap() as i32;
    let waiting = c.wait_for_gate(tag.clone());
    support::gauge_reaches(&tag, 1).await;
    let killed_at = Instant::now();
    // SAFETY: sends SIGKILL to the worker process this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let result = waiting.await;
    let took = killed_at.elapsed();
    match result {
        Err(Error::ActorDied {
            cause: DeathCause::Signaled { signal },
            ..
        }) => assert_eq!(signal, libc::SIGKILL),
        other => panic!("expected ActorDied(Signaled(9)), got {other:?}"),
    }
    println!("kill -9 to ActorDied: {took:?}");
    assert!(matches!(
        c.get().await,
        Err(Error::ActorDied {
            cause: DeathCause::Signaled { .. },
            ..
        })
    ));
    open_gate(&tag);
}

#[kt::test]
async fn a_handle_sent_to_an_actor_reaches_the_target_directly() {
    let target = Accumulator::spawn(10).on(local()).await.unwrap();
    let relay = Relay::spawn().on(local()).await.unwrap();
    let (total, reached_at) = relay.add_through(target.clone(), 5).await.unwrap();
    assert_eq!(total, 15);
    assert_eq!(target.total().await.unwrap(), 15);
    // The relay reached the target at the target's own node, not through this driver.
    let target_node = kt::handle_wire::address_of(&target.raw().erase())
        .unwrap()
        .node;
    let driver_node = kt_transport::Node::global().unwrap().address().to_string();
    assert_eq!(reached_at, target_node);
    assert_ne!(reached_at, driver_node);
}

/// A caller whose call is the only one unanswered reads the route's replies itself.
/// Once another call waits, the route's reader task must read them, even though the
/// caller that read last (the one QUIC would wake) stops polling.
#[kt::test]
async fn a_second_call_is_answered_while_the_caller_that_read_last_stops_polling() {
    let acc = Accumulator::spawn(1).on(local()).await.unwrap();
    let mut first = acc.total();
    assert!(
        futures_util::poll!(&mut first).is_pending(),
        "a remote reply takes a round trip"
    );
    let other = acc.clone();
    let second = tokio::spawn(async move { other.add(2).await });
    let answered = tokio::time::timeout(Duration::from_secs(20), second).await;
    let second = answered.expect("the second call is answered, not stranded");
    assert_eq!(second.unwrap().unwrap(), 3);
    assert_eq!(first.await.unwrap(), 1);
    // A call that no `Call` collects (it brings a reply slot of its own, as a group
    // broadcast does) is read by the reader task, whoever read last.
    let erased = acc.raw().erase();
    let encoded = erased.call::<_, u64>("add", &(4u64,));
    let third = tokio::time::timeout(Duration::from_secs(20), encoded).await;
    assert_eq!(third.expect("answered, not stranded").unwrap(), 7);
    // So is the next call, after a caller that read stopped waiting.
    let mut dropped = acc.total();
    assert!(futures_util::poll!(&mut dropped).is_pending());
    drop(dropped);
    let next = tokio::time::timeout(Duration::from_secs(20), erased.call::<_, u64>("total", &()));
    assert_eq!(next.await.expect("answered").unwrap(), 7);
}

/// An idle worker-side actor reads its caller's stream itself and hands it back to the
/// serving task while a method awaits (`add` yields, `increment` does not). Whichever
/// task read a call, one caller's calls run in the order made (rule O1), pipelined or
/// one at a time; and a kill that a peer's handle sends behind a call (a `Kill` frame)
/// reaches an actor busy in an awaiting method. (The hand-over itself, frame by frame,
/// is tested in `kt-transport`'s node tests.)
#[kt::test]
async fn calls_run_in_order_while_the_actor_and_its_serving_task_take_turns_reading() {
    let tag = format!("turns-{}", std::process::id());
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .on(local())
        .await
        .unwrap();
    let mut made = 0u64;
    for round in 0..20u64 {
        // A burst of pipelined calls, the kinds mixed differently each round.
        let calls: Vec<_> = (0..50u64)
            .map(|i| match (i * 7 + round) % 3 {
                0 => c.add(1),
                _ => c.increment(),
            })
            .collect();
        let results = futures_util::future::try_join_all(calls).await.unwrap();
        assert_eq!(results, (made + 1..=made + 50).collect::<Vec<_>>());
        made += 50;
        // Then one at a time, each call made while the actor is idle.
        for i in 0..5u64 {
            let value = match (i + round) % 2 {
                0 => c.add(1).await.unwrap(),
                _ => c.increment().await.unwrap(),
            };
            made += 1;
            assert_eq!(value, made);
        }
    }
    // A `Kill` frame behind a call that waits (sent by another process's handle, which
    // kills through the stream): read while that method awaits, and the worker exits.
    let pid = c.pid().await.unwrap();
    let relay = Relay::spawn().on(local()).await.unwrap();
    relay
        .kill_behind_a_waiting_call(c.clone(), tag.clone())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), exited(pid as i32))
        .await
        .expect("the kill is heard while the method awaits");
}

/// An actor in the driver, called from a worker's actor over QUIC and killed while one
/// call runs and one waits behind it: both callers hear `ActorDied { Killed }` at once,
/// though the driver's process (and the stream) lives on.
#[kt::test]
async fn calls_to_a_killed_actor_in_the_driver_fail_with_the_kill_in_the_calling_process() {
    let tag = format!("killed-in-driver-{}", std::process::id());
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    let relay = Relay::spawn().on(local()).await.unwrap();
    let calls = relay.two_calls_behind_a_gate(c.clone(), tag.clone());
    support::gauge_reaches(&tag, 1).await;
    c.kill();
    let ended = tokio::time::timeout(Duration::from_secs(20), calls)
        .await
        .expect("the calling process hears of the kill")
        .unwrap();
    for call in ended {
        assert!(
            matches!(
                call,
                Err(Error::ActorDied {
                    cause: kt::DeathCause::Killed,
                    ..
                })
            ),
            "{call:?}"
        );
    }
}

/// The environment variable that names the detached actor of the first driver.
const DETACHED_ROLE: &str = "KT_TEST_DETACHED_NAME";

/// Not a test of its own: the first driver of
/// `a_named_detached_actor_outlives_its_driver_and_is_found_by_another`.
#[kt::test]
#[ignore = "run as a child process by a_named_detached_actor_outlives_its_driver_and_is_found_by_another"]
async fn detached_role_spawns_a_named_detached_actor_and_exits() {
    let Some(name) = std::env::var_os(DETACHED_ROLE) else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let c = Accumulator::spawn(40)
        .name(&name)
        .detached()
        .on(local())
        .await
        .unwrap();
    c.add(2).await.unwrap();
    println!("WORKER_PID={}", worker_pid(&c).await);
}

/// Rules L2 and N1 across processes: a second driver finds, calls and kills the actor.
#[kt::test]
async fn a_named_detached_actor_outlives_its_driver_and_is_found_by_another() {
    let name = format!("remote-detached-{}", std::process::id());
    let exe = std::env::current_exe().unwrap();
    let first_driver = tokio::process::Command::new(exe)
        .args([
            "detached_role_spawns_a_named_detached_actor_and_exits",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(DETACHED_ROLE, &name)
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(first_driver.status.success(), "{first_driver:?}");
    let stdout = String::from_utf8_lossy(&first_driver.stdout);
    let worker: u32 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WORKER_PID="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no worker pid in {stdout}"));

    // The first driver has exited; its detached actor is still there.
    let found: ActorRef<Accumulator> = kt::get_actor(&name).await.unwrap();
    assert_eq!(found.total().await.unwrap(), 42);
    assert_eq!(worker_pid(&found).await, worker);
    assert!(matches!(
        kt::get_actor::<Counter>(&name).await,
        Err(Error::WrongActorType { .. })
    ));
    let again = Accumulator::spawn(0).name(&name).on(local()).await;
    assert!(
        matches!(again, Err(Error::NameTaken { .. })),
        "names are unique across drivers: {again:?}"
    );
    // With nobody reading its pipes, its output goes to its log file.
    found
        .say("said after the first driver left".into())
        .await
        .unwrap();
    let log = kt_transport::wire::directory::log_path(&name).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("said after the first driver left"),
        "{log:?}: {logged}"
    );

    found.kill();
    exited(worker as i32).await;
    assert!(matches!(
        kt::get_actor::<Accumulator>(&name).await,
        Err(Error::ActorNotFound { .. })
    ));
    let _ = std::fs::remove_file(log);
}

/// The environment variable that turns the next test into a driver for the orphan test.
const DRIVER_ROLE: &str = "KT_TEST_DRIVER_ROLE";

/// Not a test of its own: the driver process of `workers_exit_when_their_driver_is_killed`.
#[kt::test]
#[ignore = "run as a child process by workers_exit_when_their_driver_is_killed"]
async fn driver_role_spawns_a_worker_and_waits_forever() {
    if std::env::var_os(DRIVER_ROLE).is_none() {
        return;
    }
    let c = Accumulator::spawn(0).on(local()).await.unwrap();
    let pid = {
        let relay = Relay::spawn().on(local()).await.unwrap();
        relay.add_through(c.clone(), 1).await.unwrap();
        std::mem::forget(relay);
        c.add(0).await.unwrap();
        worker_pid(&c).await
    };
    println!("WORKER_PID={pid}");
    std::future::pending::<()>().await;
}

async fn worker_pid(actor: &ActorRef<Accumulator>) -> u32 {
    actor.pid().await.unwrap()
}

#[kt::test]
async fn workers_exit_when_their_driver_is_killed() {
    let exe = std::env::current_exe().unwrap();
    let mut driver = tokio::process::Command::new(exe)
        .args([
            "driver_role_spawns_a_worker_and_waits_forever",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(DRIVER_ROLE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(driver.stdout.take().unwrap()).lines();
    let worker: i32 = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the driver reports its worker");
        if let Some(pid) = line.strip_prefix("WORKER_PID=") {
            break pid.trim().parse().unwrap();
        }
    };
    driver.start_kill().unwrap();
    driver.wait().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), exited(worker))
        .await
        .expect("the worker outlived its SIGKILLed driver");
}

/// Rules B1 and L1 together: calls kept back on the caller's side (past the actor's
/// mailbox bound) are still sent, and run, when the last handle drops before they left;
/// the release goes behind them.
#[kt::test]
async fn calls_kept_back_past_the_mailbox_bound_still_run_after_the_last_handle_drops() {
    use futures_util::FutureExt;
    let tag = "remote/held-back".to_string();
    let counted = "remote/held-back-count".to_string();
    open_gate(&counted);
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .mailbox_capacity(2)
        .on(local())
        .await
        .unwrap();
    let blocked = c.wait_for_gate(tag.clone());
    support::gauge_reaches(&tag, 1).await;
    let mut calls: Vec<_> = (0..10).map(|_| c.wait_for_gate(counted.clone())).collect();
    let last = calls.last_mut().expect("ten calls");
    assert!(
        last.sent().now_or_never().is_none(),
        "kept back past the bound"
    );
    drop(calls);
    blocked.forget();
    drop(c);
    open_gate(&tag);
    tokio::time::timeout(
        Duration::from_secs(30),
        support::gauge_reaches(&counted, 10),
    )
    .await
    .expect("every call made before the last handle dropped ran");
    assert_eq!(
        support::stopped_with(&tag).await,
        DeathCause::HandlesDropped,
        "released after them"
    );
}
