//! The data store on the Kubernetes backend, through the emulator: the driver and the
//! pods are different hosts (each emulated node's pods share a network namespace of
//! their own), so values cross between them over QUIC bulk streams, while pods of one
//! node pass memfds. Keys are unique to each test: the tests share the driver's
//! directory. Blobs in call replies take the same two paths.

mod support;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use kt::PlacementStrategy;
use kt::prelude::*;
use kt::store::Version;
use support::blobs::Bulk;
use support::store::{Keeper, digest, grown, pattern};
use support::{Cluster, cluster};

fn on_k8s(cluster: &Cluster) -> Arc<dyn kt::Placement> {
    Arc::new(cluster.k8s.clone())
}

/// More than one bulk chunk, and not a multiple of it.
const LEN: usize = (3 << 20) + 123;

#[kt::test]
async fn a_value_put_in_a_pod_crosses_to_the_driver_over_quic_and_to_a_pod_of_its_node_by_memfd() {
    let c = cluster().await;
    let key = "k8s-store/crosses".to_string();
    let putter = Keeper::spawn()
        .placement_group("k8s-store-pack", PlacementStrategy::StrictPack)
        .on(on_k8s(c))
        .await
        .unwrap();
    let neighbour = Keeper::spawn()
        .placement_group("k8s-store-pack", PlacementStrategy::StrictPack)
        .on(on_k8s(c))
        .await
        .unwrap();
    putter
        .put_pattern(key.clone(), LEN, 5, 1, None)
        .await
        .unwrap()
        .unwrap();

    // The driver is another host: the bytes came over a bulk stream, not a memfd.
    let before = kt::store::traffic_of(&key);
    let entry = kt::store::get(&key).await.unwrap();
    let moved = grown(&key, before);
    assert_eq!(entry.info().size, LEN as u64);
    assert_eq!(digest(entry.bytes()), digest(&pattern(LEN, 5)));
    assert_eq!(
        (moved.received_over_quic, moved.mapped_from_this_host),
        (LEN as u64, 0)
    );

    // A pod on the putter's node maps the putter's memfd; nothing crosses QUIC.
    let (version, seen, moved) = neighbour.get_traced(key.clone()).await.unwrap().unwrap();
    assert_eq!((version, seen), (Version(1), digest(&pattern(LEN, 5))));
    assert_eq!(
        (moved.mapped_from_this_host, moved.received_over_quic),
        (LEN as u64, 0)
    );

    // The other way: a pod waiting for the driver's next put gets it over QUIC.
    let waiting = putter.wait_newer(key.clone(), Version(1));
    kt::store::put(key.clone(), pattern(LEN, 6))
        .meta("step", 2)
        .await
        .unwrap();
    let (version, step, seen) = waiting.await.unwrap().unwrap();
    assert_eq!((version, step.as_deref()), (Version(2), Some("2")));
    assert_eq!(seen, digest(&pattern(LEN, 6)));
}

/// A value held on both emulated nodes (the putter's copy, and a copy a pod of the other
/// node took) comes to the driver — a third host — in ranges from both at once, into a
/// caller's buffer and into a copy of the driver's own.
#[kt::test]
async fn a_value_held_on_two_other_hosts_comes_in_ranges_from_both_at_once() {
    const BIG: usize = (32 << 20) + 123;
    let c = cluster().await;
    let key = "k8s-store/ranges".to_string();
    let spawn = || {
        Keeper::spawn()
            .placement_group("k8s-store-ranges", PlacementStrategy::StrictSpread)
            .on(on_k8s(c))
    };
    let (putter, other) = (spawn().await.unwrap(), spawn().await.unwrap());
    putter
        .put_pattern(key.clone(), BIG, 3, 1, None)
        .await
        .unwrap()
        .unwrap();
    let (_, seen, moved) = other.get_traced(key.clone()).await.unwrap().unwrap();
    assert_eq!(seen, digest(&pattern(BIG, 3)));
    assert_eq!(
        moved.received_over_quic, BIG as u64,
        "the pods are on two hosts"
    );
    let sent = || async {
        let traffic = |keeper: &ActorRef<Keeper>| keeper.traffic_of(key.clone());
        let (a, b) = (
            traffic(&putter).await.unwrap(),
            traffic(&other).await.unwrap(),
        );
        (a.sent_over_quic, b.sent_over_quic)
    };
    let both_served = |before: (u64, u64), after: (u64, u64)| {
        let (from_putter, from_other) = (after.0 - before.0, after.1 - before.1);
        assert_eq!(from_putter + from_other, BIG as u64);
        // Two ranges of about half each (both at least the 8 MiB minimum).
        assert!(
            from_putter >= 8 << 20 && from_other >= 8 << 20,
            "{from_putter} and {from_other} bytes"
        );
    };

    let before = sent().await;
    let mut buffer = vec![0u8; BIG];
    kt::store::get_into(&key, &mut buffer).await.unwrap();
    assert_eq!(digest(&buffer), digest(&pattern(BIG, 3)));
    both_served(before, sent().await);

    let before = (sent().await, kt::store::traffic_of(&key));
    let entry = kt::store::get(&key).await.unwrap();
    assert_eq!(digest(entry.bytes()), digest(&pattern(BIG, 3)));
    assert_eq!(grown(&key, before.1).received_over_quic, BIG as u64);
    both_served(before.0, sent().await);
}

/// A putter on the first node, `getters` pods on the second, each waiting (a call in
/// flight) for a version of `key` newer than 1, as is the driver when `driver` is set;
/// returns once the directory has every waiter.
async fn waiters_on_the_second_node(
    c: &Cluster,
    key: &str,
    getters: usize,
    driver: bool,
) -> Waiters {
    let nodes = c.emulator.node_names();
    let on = |node: &str| {
        Keeper::spawn()
            .compute(kt::Compute::new().node_selector("kubernetes.io/hostname", node))
            .on(on_k8s(c))
    };
    let putter = on(nodes[0]).await.unwrap();
    let (mut pods, mut pids) = (Vec::new(), Vec::new());
    for _ in 0..getters {
        let pod = on(nodes[1]).await.unwrap();
        // Asked now: a Keeper answers one call at a time, and it will be waiting.
        pids.push(pod.pid().await.unwrap());
        pods.push(pod);
    }
    putter
        .put_pattern(key.to_string(), 1024, 1, 1, None)
        .await
        .unwrap()
        .unwrap();
    let waiting = pods
        .iter()
        .map(|getter| tokio::spawn(getter.wait_newer(key.to_string(), Version(1)).into_future()))
        .collect();
    let driver = driver
        .then(|| tokio::spawn(kt::store::wait_newer(key.to_string(), Version(1)).into_future()));
    let all = getters + usize::from(driver.is_some());
    while kt::store::ls(key).await.unwrap()[0].waiting < all {
        tokio::task::yield_now().await;
    }
    Waiters {
        putter,
        pods,
        pids,
        waiting,
        driver,
    }
}

type Waited = Result<Result<(Version, Option<String>, u64), kt::Error>, kt::Error>;

/// What [`waiters_on_the_second_node`] set up.
struct Waiters {
    putter: ActorRef<Keeper>,
    pods: Vec<ActorRef<Keeper>>,
    /// Their processes.
    pids: Vec<u32>,
    waiting: Vec<tokio::task::JoinHandle<Waited>>,
    driver: Option<tokio::task::JoinHandle<Result<kt::store::Entry, kt::Error>>>,
}

/// Many getters of one version form a tree: three pods of one node and the driver wait
/// for the next version, which a pod of the other node puts; the directory places them
/// under each other (relays forward each chunk as they verify it), so the putter sends
/// about two copies, not four.
#[kt::test]
async fn getters_waiting_for_one_version_copy_it_through_a_tree_of_relays() {
    const BIG: usize = (24 << 20) + 7;
    let c = cluster().await;
    let key = "k8s-store/fan-out";
    let w = waiters_on_the_second_node(c, key, 3, true).await;
    let before = w
        .putter
        .traffic_of(key.into())
        .await
        .unwrap()
        .sent_over_quic;
    w.putter
        .put_pattern(key.into(), BIG, 2, 2, None)
        .await
        .unwrap()
        .unwrap();
    let expected = digest(&pattern(BIG, 2));
    for waited in w.waiting {
        let (version, _, seen) = waited.await.unwrap().unwrap().unwrap();
        assert_eq!((version, seen), (Version(2), expected));
    }
    let entry = w.driver.unwrap().await.unwrap().unwrap();
    assert_eq!(digest(entry.bytes()), expected);
    let sent = w
        .putter
        .traffic_of(key.into())
        .await
        .unwrap()
        .sent_over_quic
        - before;
    assert!(
        sent <= 2 * BIG as u64,
        "the putter sent {sent} bytes: {} copies",
        sent as f64 / BIG as f64
    );
}

/// Takes a node's link faults off when dropped, failed test or not: the tests of this
/// binary share the cluster.
struct CleanLinkAfter<'a>(&'a Cluster, &'a str);

impl Drop for CleanLinkAfter<'_> {
    fn drop(&mut self) {
        let clean = kt_kube_emulator::LinkFaults::new();
        self.0.emulator.set_link_faults(self.1, &clean).unwrap();
    }
}

/// A relay killed in the middle of its copy: the getters below it go on from their other
/// sources and then the holder, from the chunk they had verified (every byte of the value
/// arrives once), and nobody hangs. The second node's link is slowed to 100 Mbit/s so that
/// the relay is still copying when it dies.
#[kt::test]
async fn a_relay_killed_mid_copy_leaves_its_getters_to_finish_from_where_they_stood() {
    const BIG: usize = (16 << 20) + 7;
    let c = cluster().await;
    let key = "k8s-store/fan-out-relay-dies";
    let second = c.emulator.node_names()[1];
    let slow = kt_kube_emulator::LinkFaults::new().rate_bits_per_second(100_000_000);
    if let Err(error) = c.emulator.set_link_faults(second, &slow) {
        eprintln!("skipped: pods share one host here, so there is no relay to kill ({error})");
        return;
    }
    let _clean = CleanLinkAfter(c, second);
    let w = waiters_on_the_second_node(c, key, 3, false).await;
    let pids = w.pids.clone();
    w.putter
        .put_pattern(key.into(), BIG, 2, 2, None)
        .await
        .unwrap()
        .unwrap();
    // The first getter that serves another is the relay to kill.
    let relay = loop {
        let listing = kt::store::ls(key).await.unwrap();
        let transfers = listing[0].versions.iter().flat_map(|v| &v.transfers);
        let relayed = transfers
            .map(|transfer| transfer.from.pid)
            .find(|pid| pids.contains(pid));
        if let Some(pid) = relayed {
            break pid;
        }
        tokio::task::yield_now().await;
    };
    // SAFETY: sends SIGKILL to a pod process of this test.
    assert_eq!(unsafe { libc::kill(relay as i32, libc::SIGKILL) }, 0);
    let expected = digest(&pattern(BIG, 2));
    let (mut finished, mut broken) = (0, 0);
    for ((waited, pod), pid) in w.waiting.into_iter().zip(&w.pods).zip(&pids) {
        let waited = waited.await.unwrap();
        if *pid == relay {
            assert!(waited.is_err(), "the killed relay answered: {waited:?}");
            continue;
        }
        let (version, _, seen) = waited.unwrap().unwrap();
        assert_eq!((version, seen), (Version(2), expected));
        let traffic = pod.traffic_of(key.into()).await.unwrap();
        assert_eq!(
            traffic.received_over_quic, BIG as u64,
            "every byte arrived once"
        );
        broken += traffic.sources_lost_mid_copy;
        finished += 1;
    }
    assert_eq!(finished, 2);
    assert!(
        broken >= 1,
        "the relay died before its getters were done with it"
    );
}

#[kt::test]
async fn get_into_from_a_pod_writes_the_bulk_stream_into_the_callers_buffer() {
    let c = cluster().await;
    let key = "k8s-store/get-into".to_string();
    let putter = Keeper::spawn().on(on_k8s(c)).await.unwrap();
    putter
        .put_pattern(key.clone(), LEN, 9, 1, None)
        .await
        .unwrap()
        .unwrap();
    let mut buffer = vec![0u8; LEN + 10];
    let info = kt::store::get_into(&key, &mut buffer).await.unwrap();
    assert_eq!((info.version, info.size), (Version(1), LEN as u64));
    assert_eq!(digest(&buffer[..LEN]), digest(&pattern(LEN, 9)));
}

#[kt::test]
async fn a_value_whose_pod_is_gone_fails_with_holder_lost_at_once() {
    let c = cluster().await;
    let key = "k8s-store/lost".to_string();
    let putter = Keeper::spawn().on(on_k8s(c)).await.unwrap();
    putter
        .put_pattern(key.clone(), 1000, 1, 1, None)
        .await
        .unwrap()
        .unwrap();
    putter.kill();
    putter.raw().erase().stopped().await;
    // The driver forgot the pod's holdings when it learned of its death: no attempt to
    // reach the gone pod (which would wait for QUIC's handshake timeout).
    let started = std::time::Instant::now();
    match tokio::time::timeout(Duration::from_secs(30), kt::store::get(&key)).await {
        Ok(Err(Error::HolderLost {
            key: lost,
            version: 1,
            ..
        })) => assert_eq!(lost, key),
        other => panic!("expected HolderLost, got {other:?}"),
    }
    println!("HolderLost after the pod's death: {:?}", started.elapsed());
}

/// Past the size from which a cross-host reply is received into huge pages.
const BLOB_LEN: usize = (5 << 20) + 7;

#[kt::test]
async fn a_blob_reply_crosses_from_a_pod_over_quic_and_to_a_pod_of_its_node_as_shared_memory() {
    let c = cluster().await;
    let holder = Bulk::spawn()
        .placement_group("k8s-blob-pack", PlacementStrategy::StrictPack)
        .on(on_k8s(c))
        .await
        .unwrap();
    let neighbour = Bulk::spawn()
        .placement_group("k8s-blob-pack", PlacementStrategy::StrictPack)
        .on(on_k8s(c))
        .await
        .unwrap();
    // To the driver, on another host: over QUIC, whole.
    let blob = holder.shared(BLOB_LEN, 9).await.unwrap().unwrap();
    assert!(!blob.is_shared(), "{blob:?}");
    assert_eq!(digest(&blob), digest(&pattern(BLOB_LEN, 9)));
    // To a pod of the same node: the holder's memfd.
    let (shared, sum) = neighbour
        .fetch_from(holder.clone(), BLOB_LEN, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(shared, "a pod of the same node got a copy");
    assert_eq!(sum, digest(&pattern(BLOB_LEN, 10)));
}
