//! Rule O1 through a full mailbox on a multi-threaded runtime: calls parked while the
//! mailbox is full keep their order, from one caller and from several.

mod support;

use std::sync::Arc;

use kt::prelude::*;
use support::{Counter, probe};

fn assert_handle_traits<T: Clone + Send + Sync + 'static>() {}

#[test]
fn handles_are_clone_send_sync() {
    assert_handle_traits::<ActorRef<Counter>>();
    assert_handle_traits::<kt::ErasedActor>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_calls_keep_their_order_through_a_tiny_mailbox() {
    for placement in [
        Arc::new(kt::InProcess) as Arc<dyn kt::Placement>,
        Arc::new(kt::Loopback),
    ] {
        let c = Counter::spawn(0, "parking-one".into(), probe().await)
            .mailbox_capacity(2)
            .on(placement)
            .await
            .unwrap();
        let calls: Vec<_> = (0..2_000).map(|_| c.add(1)).collect();
        let results = futures_util::future::try_join_all(calls).await.unwrap();
        assert_eq!(results, (1..=2_000).collect::<Vec<u64>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_several_callers_keeps_its_own_order() {
    let c = Counter::spawn(0, "parking-many".into(), probe().await)
        .mailbox_capacity(3)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let calls: Vec<_> = (0..500).map(|_| c.increment()).collect();
                futures_util::future::try_join_all(calls).await.unwrap()
            })
        })
        .collect();
    let mut all = Vec::new();
    for caller in callers {
        let seen = caller.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "a caller's calls ran out of order"
        );
        all.extend(seen);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=4_000).collect::<Vec<u64>>(),
        "every call ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_parking_bound_are_refused_as_overloaded_and_the_rest_run_in_order() {
    let tag = "parking-bound".to_string();
    let c = Counter::spawn(0, tag.clone(), probe().await)
        .mailbox_capacity(1)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    let blocked = c.wait_for_gate(tag.clone());
    support::gauge_reaches(&tag, 1).await;
    // The actor is busy: one call fits in its mailbox, `limit` more park beside it.
    let limit = kt::parking_limit(1);
    let accepted: Vec<_> = (0..=limit).map(|_| c.add(1)).collect();
    let refused = c.add(1);
    match refused.await {
        Err(Error::Overloaded { limit: said, .. }) => assert_eq!(said, limit),
        other => panic!("expected Overloaded past {limit} parked calls, got {other:?}"),
    }
    support::open_gate(&tag);
    blocked.await.unwrap();
    let results = futures_util::future::try_join_all(accepted).await.unwrap();
    assert_eq!(
        results,
        (1..=limit as u64 + 1).collect::<Vec<u64>>(),
        "every call before the refused one ran, in order"
    );
    assert_eq!(
        c.get().await.unwrap(),
        limit as u64 + 1,
        "the refused call did not run"
    );
}
