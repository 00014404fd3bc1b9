//! The semantic suite's tests, written once as `async fn(backend)`: `tests/semantics.rs`
//! runs them against the in-process and local-process backends, and
//! `tests/semantics_kubernetes.rs` against the Kubernetes placement. A test's name starts
//! with the rule it checks (E1, O1, ...), so a failure says which rule broke.

#![allow(dead_code)]

use crate::support::*;
use futures_util::FutureExt;
use kt::prelude::*;

fn tag(backend: &str, test: &str) -> String {
    format!("{backend}/{test}")
}

pub async fn counter(backend: &str, tag: &str) -> ActorRef<Counter> {
    Counter::spawn(0, tag.to_string(), probe().await)
        .on(placement(backend))
        .await
        .expect("spawn")
}

// ---- E: sending ----

pub async fn e1_three_calls_made_before_any_await_resolve_1_2_3(backend: &str) {
    let c = counter(backend, &tag(backend, "e1")).await;
    let (a, b, d) = (c.increment(), c.increment(), c.increment());
    assert_eq!(
        (a.await.unwrap(), b.await.unwrap(), d.await.unwrap()),
        (1, 2, 3)
    );
}

pub async fn e2_dropping_the_call_future_does_not_cancel_the_call(backend: &str) {
    let c = counter(backend, &tag(backend, "e2")).await;
    drop(c.increment());
    c.increment().forget();
    assert_eq!(c.get().await.unwrap(), 2);
}

// ---- O: order and concurrency ----

pub async fn o1_calls_run_in_the_order_made_across_clones(backend: &str) {
    let c = counter(backend, &tag(backend, "o1")).await;
    let c2 = c.clone();
    let calls: Vec<_> = (0..200)
        .map(|i| if i % 2 == 0 { c.add(1) } else { c2.add(1) })
        .collect();
    let results = futures_util::future::try_join_all(calls).await.unwrap();
    assert_eq!(results, (1..=200).collect::<Vec<u64>>());
}

pub async fn o2_async_exclusive_methods_do_not_interleave(backend: &str) {
    let c = Counter::spawn(0, tag(backend, "o2"), probe().await)
        .max_concurrency(8)
        .on(placement(backend))
        .await
        .unwrap();
    let calls: Vec<_> = (0..50).map(|_| c.add(2)).collect();
    futures_util::future::try_join_all(calls).await.unwrap();
    // `add` reads, yields, then writes: any interleaving would lose updates.
    assert_eq!(c.get().await.unwrap(), 100);
}

pub async fn o3_shared_methods_overlap_up_to_max_concurrency_and_no_further(backend: &str) {
    let tag = tag(backend, "o3");
    let h = Holder::spawn(tag.clone(), probe().await)
        .max_concurrency(2)
        .on(placement(backend))
        .await
        .unwrap();
    let holds: Vec<_> = (0..4).map(|_| h.hold()).collect();
    gauge_reaches(&tag, 2).await;
    // The actor task has gone idle with two holds running: on this single-threaded test
    // runtime, a third would have started in the same turn, before this task ran again.
    assert_eq!(gauge(&tag), 2, "more than max_concurrency calls started");
    open_gate(&tag);
    let starts = futures_util::future::try_join_all(holds).await.unwrap();
    assert!(
        starts.iter().all(|&n| n <= 2),
        "a hold saw {starts:?} running at once"
    );
    assert_eq!(h.max_seen().await.unwrap(), 2);
}

pub async fn o3_shared_methods_run_one_at_a_time_by_default(backend: &str) {
    let tag = tag(backend, "o3-default");
    let h = Holder::spawn(tag.clone(), probe().await)
        .on(placement(backend))
        .await
        .unwrap();
    let holds: Vec<_> = (0..3).map(|_| h.hold()).collect();
    gauge_reaches(&tag, 1).await;
    assert_eq!(gauge(&tag), 1);
    open_gate(&tag);
    futures_util::future::try_join_all(holds).await.unwrap();
    assert_eq!(h.max_seen().await.unwrap(), 1);
}

// ---- R: errors ----

pub async fn r1_a_methods_own_error_reaches_the_caller_typed(backend: &str) {
    let c = Counter::spawn(3, tag(backend, "r1"), probe().await)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(c.checked_sub(2).await.unwrap(), Ok(1));
    assert_eq!(
        c.checked_sub(5).await.unwrap(),
        Err(CounterError::Underflow { value: 1, n: 5 })
    );
    assert_eq!(
        c.get().await.unwrap(),
        1,
        "the actor keeps running after returning an error"
    );
}

pub async fn r2_a_panic_reaches_the_caller_as_actor_panicked(backend: &str) {
    let c = counter(backend, &tag(backend, "r2")).await;
    match c.boom("kaboom".into()).await {
        Err(Error::ActorPanicked {
            actor,
            method,
            message,
        }) => {
            assert_eq!((method.as_str(), message.as_str()), ("boom", "kaboom"));
            assert_eq!(actor.id, c.id());
        }
        other => panic!("expected ActorPanicked, got {other:?}"),
    }
}

// ---- S: supervision ----

pub async fn s1_a_panicked_actor_restarts_with_its_original_arguments(backend: &str) {
    let c = Counter::spawn(10, tag(backend, "s1"), probe().await)
        .max_restarts(1)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(c.increment().await.unwrap(), 11);
    let err = c.boom("first".into()).await.unwrap_err();
    assert!(matches!(err, Error::ActorPanicked { .. }), "{err:?}");
    // The next call runs on the new incarnation, rebuilt from the original arguments.
    assert_eq!(c.get().await.unwrap(), 10);
    assert_eq!(c.whoami().await.unwrap().2, 1, "one restart");
}

pub async fn s1_calls_waiting_at_the_panic_fail_and_idempotent_ones_rerun(backend: &str) {
    let tag = tag(backend, "s1-waiting");
    let c = Counter::spawn(5, tag.clone(), probe().await)
        .max_restarts(1)
        .on(placement(backend))
        .await
        .unwrap();
    let blocked = c.wait_for_gate(tag.clone());
    let boom = c.boom("while others wait".into());
    let waiting = c.increment();
    let idempotent = c.get_again();
    open_gate(&tag);
    assert_eq!(blocked.await.unwrap(), 5);
    assert!(matches!(boom.await, Err(Error::ActorPanicked { .. })));
    match waiting.await {
        Err(Error::ActorDied {
            cause: DeathCause::Panicked { method, .. },
            ..
        }) => assert_eq!(method, "boom"),
        other => panic!("expected ActorDied(Panicked), got {other:?}"),
    }
    assert_eq!(
        idempotent.await.unwrap(),
        5,
        "idempotent call re-ran on the new incarnation"
    );
    assert_eq!(
        c.increment().await.unwrap(),
        6,
        "later calls run on the new incarnation"
    );
}

pub async fn s2_without_restarts_left_the_actor_is_dead(backend: &str) {
    let c = counter(backend, &tag(backend, "s2")).await;
    assert!(matches!(
        c.boom("fatal".into()).await,
        Err(Error::ActorPanicked { .. })
    ));
    match c.get().await {
        Err(Error::ActorDied {
            cause: DeathCause::Panicked { method, message },
            ..
        }) => {
            assert_eq!((method.as_str(), message.as_str()), ("boom", "fatal"));
        }
        other => panic!("expected ActorDied(Panicked), got {other:?}"),
    }
    // Once it has stopped for good, the handle knows (for a remote actor, when its
    // worker's report or exit arrives).
    let cause = c.raw().erase().stopped().await;
    assert!(matches!(cause, DeathCause::Panicked { .. }), "{cause:?}");
    assert!(!c.is_alive());
}

// ---- L: lifetime ----

pub async fn l1_dropping_the_last_handle_runs_on_stop_after_queued_calls(backend: &str) {
    let tag = tag(backend, "l1");
    let c = counter(backend, &tag).await;
    let c2 = c.clone();
    let queued = c.increment();
    drop(c);
    assert!(!has_stopped(&tag), "a clone still owns the actor");
    drop(c2);
    assert_eq!(
        queued.await.unwrap(),
        1,
        "calls made before the drop still run"
    );
    assert_eq!(stopped_with(&tag).await, DeathCause::HandlesDropped);
}

pub async fn l2_a_detached_actor_outlives_its_handles_until_killed(backend: &str) {
    let tag = tag(backend, "l2");
    let name = format!("detached-{tag}");
    let c = Counter::spawn(7, tag.clone(), probe().await)
        .name(&name)
        .detached()
        .on(placement(backend))
        .await
        .unwrap();
    drop(c);
    let found: ActorRef<Counter> = kt::get_actor(&name).await.unwrap();
    assert_eq!(found.get().await.unwrap(), 7);
    found.kill();
    assert!(matches!(
        found.get().await,
        Err(Error::ActorDied {
            cause: DeathCause::Killed,
            ..
        })
    ));
    assert!(!has_stopped(&tag), "kill does not run on_stop");
    assert!(matches!(
        kt::get_actor::<Counter>(&name).await,
        Err(Error::ActorNotFound { .. })
    ));
}

pub async fn l2_a_detached_actor_needs_a_name(backend: &str) {
    let err = Counter::spawn(0, tag(backend, "l2-name"), probe().await)
        .detached()
        .on(placement(backend))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err:?}");
}

pub async fn l3_kill_fails_waiting_and_later_calls_at_once(backend: &str) {
    let tag = tag(backend, "l3");
    let c = counter(backend, &tag).await;
    let blocked = c.wait_for_gate(tag.clone());
    let queued = c.increment();
    c.kill();
    for call in [blocked, queued] {
        assert!(matches!(
            call.await,
            Err(Error::ActorDied {
                cause: DeathCause::Killed,
                ..
            })
        ));
    }
    // A call to a killed actor fails without waiting for anything.
    let next = c.get().now_or_never().expect("fails at once");
    assert!(matches!(
        next,
        Err(Error::ActorDied {
            cause: DeathCause::Killed,
            ..
        })
    ));
    assert!(!has_stopped(&tag));
}

pub async fn l4_stop_from_inside_fails_queued_calls_and_runs_on_stop(backend: &str) {
    let tag = tag(backend, "l4");
    let c = counter(backend, &tag).await;
    let stop = c.stop_after_this();
    let queued = c.increment();
    assert_eq!(stop.await.unwrap(), 0);
    assert!(matches!(
        queued.await,
        Err(Error::ActorDied {
            cause: DeathCause::Stopped,
            ..
        })
    ));
    assert_eq!(stopped_with(&tag).await, DeathCause::Stopped);
}

// ---- B: backpressure ----

pub async fn b1_a_full_mailbox_makes_the_sender_wait_and_drops_nothing(backend: &str) {
    let tag = tag(backend, "b1");
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .mailbox_capacity(2)
        .on(placement(backend))
        .await
        .unwrap();
    let blocked = c.wait_for_gate(tag.clone());
    // Wait until the actor runs the blocking call, so the mailbox is empty again.
    gauge_reaches(&tag, 1).await;
    let mut probe = c.get();
    probe.sent().now_or_never().expect("room for it").unwrap();
    let mut filler = c.increment();
    filler.sent().now_or_never().expect("room for it").unwrap();
    let mut parked: Vec<_> = (0..5).map(|_| c.increment()).collect();
    // Everywhere: in one process the mailbox itself is full; for an actor in another
    // process the caller's route has used up its credit (mailbox capacity plus the one
    // call running) and keeps the calls back.
    for call in &mut parked {
        assert!(
            call.sent().now_or_never().is_none(),
            "a call past capacity waits for room"
        );
    }
    open_gate(&tag);
    assert_eq!(blocked.await.unwrap(), 0);
    assert_eq!(probe.await.unwrap(), 0);
    assert_eq!(filler.await.unwrap(), 1);
    let results = futures_util::future::try_join_all(parked).await.unwrap();
    assert_eq!(results, vec![2, 3, 4, 5, 6], "parked calls ran, in order");
}

// ---- D: death ----

pub async fn d1_every_call_to_a_dead_actor_fails_with_its_cause(backend: &str) {
    let c = counter(backend, &tag(backend, "d1")).await;
    c.kill();
    for _ in 0..3 {
        assert!(matches!(
            c.increment().await,
            Err(Error::ActorDied {
                cause: DeathCause::Killed,
                ..
            })
        ));
    }
}

// ---- N: names ----

pub async fn n1_names_are_unique_and_lookups_are_typed(backend: &str) {
    let name = format!("named-{}", tag(backend, "n1"));
    let c = Counter::spawn(1, tag(backend, "n1"), probe().await)
        .name(&name)
        .on(placement(backend))
        .await
        .unwrap();
    let again = Counter::spawn(2, tag(backend, "n1b"), probe().await)
        .name(&name)
        .on(placement(backend))
        .await;
    assert!(matches!(again, Err(Error::NameTaken { .. })), "{again:?}");
    match kt::get_actor::<Other>(&name).await {
        Err(Error::WrongActorType {
            name: named,
            expected,
            found,
        }) => {
            assert_eq!(named, name, "the error names the name looked up");
            assert!(
                expected.ends_with("::Other") && found.ends_with("::Counter"),
                "{expected} {found}"
            );
        }
        other => panic!("expected WrongActorType, got {other:?}"),
    }
    let found = kt::get_actor::<Counter>(&name).await.unwrap();
    assert_eq!(found.get().await.unwrap(), 1);
    assert_eq!(found.name(), Some(name.as_str()));
    drop((c, found));
    assert!(matches!(
        kt::get_actor::<Counter>("no-such-actor").await,
        Err(Error::ActorNotFound { .. })
    ));
}

// ---- spawning and groups ----

pub async fn spawn_failures_are_start_failed_errors(backend: &str) {
    let ok = Fragile::spawn("fine".into(), false)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(ok.label_text().await.unwrap(), "fine");
    match Fragile::spawn("bad".into(), true)
        .on(placement(backend))
        .await
    {
        Err(Error::StartFailed { message, .. }) => assert_eq!(message, "refusing to build 'bad'"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
}

pub async fn groups_broadcast_in_rank_order_and_round_robin(backend: &str) {
    let name = format!("group-{}", tag(backend, "groups"));
    let group = Counter::spawn_group(3, 0, tag(backend, "groups"), probe().await)
        .name(&name)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(group.len(), 3);
    let who = group.all().whoami().await.unwrap();
    for (rank, (member_name, member, _)) in who.iter().enumerate() {
        assert_eq!(
            member_name.as_deref(),
            Some(format!("{name}-{rank}").as_str())
        );
        assert_eq!(*member, Some(GroupMember { rank, size: 3 }));
    }
    // Six calls round robin: every member gets two.
    for _ in 0..6 {
        group.any().increment().await.unwrap();
    }
    assert_eq!(group.all().get().await.unwrap(), vec![2, 2, 2]);
    assert_eq!(group.all().add(10).await.unwrap(), vec![12, 12, 12]);
    let err = group.all().checked_sub(100).await.unwrap();
    assert!(err.iter().all(Result::is_err));
    // After a death, the survivors form a group of their own.
    group.member(1).unwrap().kill();
    let survivors = group.survivors();
    assert_eq!(
        survivors.iter().map(|m| m.id()).collect::<Vec<_>>(),
        [0, 2].map(|rank| group.member(rank).unwrap().id())
    );
    let reformed = ActorGroup::from_members(survivors).unwrap();
    assert_eq!(reformed.all().add(1).await.unwrap(), vec![13, 13]);
    assert!(matches!(
        ActorGroup::<Counter>::from_members(Vec::new()),
        Err(Error::InvalidOptions { .. })
    ));
}

// ---- S3: process restarts (backends with worker processes only) ----

pub async fn s3_a_dead_worker_process_is_restarted_and_idempotent_calls_rerun(backend: &str) {
    let tag = tag(backend, "s3");
    let c = Counter::spawn(7, tag.clone(), probe().await)
        .max_restarts(1)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(c.increment().await.unwrap(), 8);
    let first = host_of(&c).await;
    let waiting = c.wait_for_gate(tag.clone());
    gauge_reaches(&tag, 1).await;
    let lost = c.increment();
    let idempotent = c.get_again();
    let cause = kill_host(backend, &first).await;
    for (what, result) in [("running", waiting.await), ("queued", lost.await)] {
        match result {
            Err(Error::ActorDied { cause: seen, .. }) => assert_eq!(seen, cause, "{what} call"),
            other => panic!("{what} call: expected ActorDied({cause:?}), got {other:?}"),
        }
    }
    assert_eq!(
        idempotent.await.unwrap(),
        7,
        "the idempotent call re-ran on a new process, rebuilt from the original arguments"
    );
    let second = host_of(&c).await;
    assert!(
        first.pid != second.pid || first.pod != second.pod,
        "a new process"
    );
    assert!(c.is_alive());
    assert_eq!(
        c.increment().await.unwrap(),
        8,
        "later calls reach the new process"
    );

    // No restarts left: the next death is final.
    let cause = kill_host(backend, &second).await;
    assert_eq!(c.raw().erase().stopped().await, cause);
    assert!(!c.is_alive());
    match c.get().await {
        Err(Error::ActorDied { cause: seen, .. }) => assert_eq!(seen, cause),
        other => panic!("expected ActorDied({cause:?}), got {other:?}"),
    }
    open_gate(&tag);
}

pub async fn s3_re_sent_calls_run_first_and_in_their_original_order(backend: &str) {
    let tag = tag(backend, "s3-order");
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .max_restarts(1)
        .on(placement(backend))
        .await
        .unwrap();
    let host = host_of(&c).await;
    let waiting = c.wait_for_gate(tag.clone());
    gauge_reaches(&tag, 1).await;
    let lost: Vec<_> = (1..=20).map(|n| c.record(n)).collect();
    kill_host(backend, &host).await;
    assert!(matches!(waiting.await, Err(Error::ActorDied { .. })));
    // Made after the death was seen: it waits for the new process, behind the re-sent.
    let later = c.history();
    let logs = futures_util::future::try_join_all(lost).await.unwrap();
    for (n, log) in logs.iter().enumerate() {
        assert_eq!(
            *log,
            (1..=n as u64 + 1).collect::<Vec<_>>(),
            "re-sent in order"
        );
    }
    assert_eq!(later.await.unwrap(), (1..=20).collect::<Vec<_>>());
    open_gate(&tag);
}

pub async fn s3_kill_is_final_even_with_restarts_left(backend: &str) {
    let c = Counter::spawn(0, tag(backend, "s3-kill"), probe().await)
        .max_restarts(3)
        .on(placement(backend))
        .await
        .unwrap();
    assert_eq!(c.increment().await.unwrap(), 1);
    c.kill();
    assert_eq!(c.raw().erase().stopped().await, DeathCause::Killed);
    assert!(matches!(
        c.get().await,
        Err(Error::ActorDied {
            cause: DeathCause::Killed,
            ..
        })
    ));
}

/// Calls `$m!` with the name of every rule kept by backends whose actors live in worker
/// processes: run by `tests/semantics.rs` on local processes and
/// `tests/semantics_kubernetes.rs` on pods.
#[macro_export]
macro_rules! every_process_rule {
    ($m:ident) => {
        $m!(
            s3_a_dead_worker_process_is_restarted_and_idempotent_calls_rerun,
            s3_re_sent_calls_run_first_and_in_their_original_order,
            s3_kill_is_final_even_with_restarts_left,
        );
    };
}

/// Calls `$m!` with the name of every test of the suite: the one list both suite
/// binaries run.
#[macro_export]
macro_rules! every_rule {
    ($m:ident) => {
        $m!(
            e1_three_calls_made_before_any_await_resolve_1_2_3,
            e2_dropping_the_call_future_does_not_cancel_the_call,
            o1_calls_run_in_the_order_made_across_clones,
            o2_async_exclusive_methods_do_not_interleave,
            o3_shared_methods_overlap_up_to_max_concurrency_and_no_further,
            o3_shared_methods_run_one_at_a_time_by_default,
            r1_a_methods_own_error_reaches_the_caller_typed,
            r2_a_panic_reaches_the_caller_as_actor_panicked,
            s1_a_panicked_actor_restarts_with_its_original_arguments,
            s1_calls_waiting_at_the_panic_fail_and_idempotent_ones_rerun,
            s2_without_restarts_left_the_actor_is_dead,
            l1_dropping_the_last_handle_runs_on_stop_after_queued_calls,
            l2_a_detached_actor_needs_a_name,
            l3_kill_fails_waiting_and_later_calls_at_once,
            l4_stop_from_inside_fails_queued_calls_and_runs_on_stop,
            b1_a_full_mailbox_makes_the_sender_wait_and_drops_nothing,
            d1_every_call_to_a_dead_actor_fails_with_its_cause,
            spawn_failures_are_start_failed_errors,
            groups_broadcast_in_rank_order_and_round_robin,
            l2_a_detached_actor_outlives_its_handles_until_killed,
            n1_names_are_unique_and_lookups_are_typed,
        );
    };
}
