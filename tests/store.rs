//! The data store between processes: versions put in one process and read in another,
//! the same-host path (a sealed memfd mapped without a copy), holders that die, and
//! values read into buffers of the caller's. Every key is unique to its test, since the
//! tests of this binary share the driver's directory.

mod support;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use kt::prelude::*;
use kt::store::{Dtype, Version, Versions};
use support::store::{Keeper, digest, grown, in_a_store_memfd, pattern};

fn local() -> Arc<dyn kt::Placement> {
    Arc::new(kt::LocalProcess::new())
}

#[kt::test]
async fn a_version_put_in_a_worker_wakes_a_waiting_driver_and_is_mapped_without_a_copy() {
    let key = "store/wakes".to_string();
    let keeper = Keeper::spawn().on(local()).await.unwrap();
    // Waiting before anything is put: the directory answers when the put reaches it.
    let before = kt::store::traffic_of(&key);
    let waiting = tokio::spawn(kt::store::wait_newer(key.clone(), Version::NONE).into_future());
    let len = 3 << 20;
    let version = keeper
        .put_pattern(key.clone(), len, 7, 42, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, Version(1));
    let entry = waiting.await.unwrap().unwrap();
    assert_eq!(entry.version(), Version(1));
    assert_eq!(entry.info().meta("step"), Some("42"));
    assert_eq!(entry.info().size, len as u64);
    assert_eq!(&entry.bytes()[..], &pattern(len, 7)[..]);
    // The driver reads the worker's pages, passed on this host, not streamed.
    let moved = grown(&key, before);
    assert_eq!(
        (moved.mapped_from_this_host, moved.received_over_quic),
        (len as u64, 0)
    );
    assert_eq!(
        keeper
            .traffic_of(key.clone())
            .await
            .unwrap()
            .passed_on_this_host,
        len as u64
    );
    assert!(
        in_a_store_memfd(entry.bytes().as_ptr()),
        "the bytes were copied"
    );
    // A second get is the same mapping again.
    let again = kt::store::get(&key).await.unwrap();
    assert_eq!(again.bytes().as_ptr(), entry.bytes().as_ptr());
    // The driver holds a copy now, and no transfer is left listed (the directory's calls
    // from this process arrive in order: the listing comes after them).
    let listed = kt::store::ls(&key).await.unwrap();
    let version = &listed[0].versions[0];
    assert_eq!((version.holders, version.transfers.len()), (2, 0));
}

#[kt::test]
async fn versions_grow_per_put_and_keep_last_drops_the_oldest() {
    let key = "store/retention".to_string();
    let keeper = Keeper::spawn().on(local()).await.unwrap();
    for step in 1..=3u64 {
        let version = keeper
            .put_pattern(key.clone(), 1000, step as u8, step, Some(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version, Version(step));
    }
    match kt::store::get_at(&key, Version(1)).await {
        Err(Error::VersionGone {
            version: 1, kept, ..
        }) => assert_eq!(kept, "2..=3"),
        other => panic!("expected VersionGone, got {other:?}"),
    }
    let second = kt::store::get_at(&key, Version(2)).await.unwrap();
    assert_eq!(&second.bytes()[..], &pattern(1000, 2)[..]);
    let newest = kt::store::get(&key).await.unwrap();
    assert_eq!(
        (newest.version(), newest.info().meta("step")),
        (Version(3), Some("3"))
    );
    let listed = kt::store::ls("store/retention").await.unwrap();
    assert_eq!(listed.len(), 1);
    let versions: Vec<Version> = listed[0]
        .versions
        .iter()
        .map(|listed| listed.info.version)
        .collect();
    assert_eq!(versions, [Version(2), Version(3)]);
    assert_eq!(
        kt::store::rm(&key, Versions::All).await.unwrap(),
        [Version(2), Version(3)]
    );
    assert!(matches!(
        kt::store::get(&key).await,
        Err(Error::KeyNotFound { .. })
    ));
    // Versions are never reused, not even after rm.
    let next = keeper
        .put_pattern(key.clone(), 10, 0, 4, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next, Version(4));
}

#[kt::test]
async fn a_worker_waiting_for_the_drivers_next_put_gets_it() {
    let key = "store/driver-puts".to_string();
    let keeper = Keeper::spawn().on(local()).await.unwrap();
    kt::store::put(key.clone(), pattern(5000, 1))
        .meta("step", 1)
        .await
        .unwrap();
    // v1 exists: a wait for something newer than v1 waits for the next put.
    let waiting = keeper.wait_newer(key.clone(), Version(1));
    kt::store::put(key.clone(), pattern(6000, 2))
        .meta("step", 2)
        .await
        .unwrap();
    let (version, step, seen) = waiting.await.unwrap().unwrap();
    assert_eq!((version, step.as_deref()), (Version(2), Some("2")));
    assert_eq!(seen, digest(&pattern(6000, 2)));
}

#[kt::test]
async fn a_get_re_sources_from_a_getter_when_the_putter_is_killed_and_fails_when_none_is_left() {
    let key = "store/holders".to_string();
    let putter = Keeper::spawn().on(local()).await.unwrap();
    let getter = Keeper::spawn().on(local()).await.unwrap();
    let len = 1 << 20;
    putter
        .put_pattern(key.clone(), len, 3, 1, None)
        .await
        .unwrap()
        .unwrap();
    // The getter keeps its copy and serves it from now on.
    let (_, seen) = getter.get_digest(key.clone()).await.unwrap().unwrap();
    assert_eq!(seen, digest(&pattern(len, 3)));
    let putter_pid = putter.pid().await.unwrap();
    kill_and_wait(putter_pid as i32).await;
    let entry = kt::store::get(&key).await.unwrap();
    assert_eq!(digest(entry.bytes()), digest(&pattern(len, 3)));

    // A value whose only holder is gone fails at once with HolderLost.
    let lost_key = "store/holders-lost".to_string();
    let only = Keeper::spawn().on(local()).await.unwrap();
    only.put_pattern(lost_key.clone(), 100, 0, 1, None)
        .await
        .unwrap()
        .unwrap();
    let only_pid = only.pid().await.unwrap();
    kill_and_wait(only_pid as i32).await;
    match tokio::time::timeout(Duration::from_secs(30), kt::store::get(&lost_key)).await {
        Ok(Err(Error::HolderLost {
            key,
            version: 1,
            holder,
        })) => {
            assert_eq!(key, lost_key);
            assert!(holder.contains(&only_pid.to_string()), "{holder}");
        }
        other => panic!("expected HolderLost, got {other:?}"),
    }
}

/// Kills a worker with SIGKILL and waits until its process is gone.
async fn kill_and_wait(pid: i32) {
    // SAFETY: sends SIGKILL to a worker process this test spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    support::exited(pid).await;
}

#[kt::test]
async fn get_into_fills_a_buffer_of_the_callers() {
    let key = "store/get-into".to_string();
    let keeper = Keeper::spawn().on(local()).await.unwrap();
    keeper
        .put_pattern(key.clone(), 4096, 9, 1, None)
        .await
        .unwrap()
        .unwrap();
    let mut small = vec![0u8; 100];
    let error = kt::store::get_into(&key, &mut small)
        .await
        .expect_err("too small");
    assert!(error.to_string().contains("at least 4096 bytes"), "{error}");
    let mut buffer = vec![0u8; 5000];
    let info = kt::store::get_into(&key, &mut buffer).await.unwrap();
    assert_eq!((info.version, info.size), (Version(1), 4096));
    assert_eq!(&buffer[..4096], &pattern(4096, 9)[..]);
    assert!(buffer[4096..].iter().all(|b| *b == 0));
}

#[kt::test]
async fn tensors_put_in_a_worker_are_read_as_views_of_the_mapping() {
    let key = "store/tensors".to_string();
    let keeper = Keeper::spawn().on(local()).await.unwrap();
    keeper.put_weights(key.clone(), 0.5).await.unwrap().unwrap();
    let entry = kt::store::get(&key).await.unwrap();
    let tensors = entry.tensors().unwrap();
    let w = tensors.tensor("layer.w").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[2usize, 2][..]));
    let values: Vec<f32> = w
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(values, [0.5, 1.0, 1.5, 2.0]);
    assert!(in_a_store_memfd(w.data().as_ptr()), "the tensor was copied");
    // Reading it as another kind is a clear error.
    let error = entry.value::<Vec<u8>>().expect_err("not a serde value");
    assert!(matches!(error, Error::WrongValueKind { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("read it with `Entry::tensors()`"),
        "{error}"
    );
}

#[kt::test]
async fn in_one_process_a_get_is_the_put_bytes_themselves() {
    let key = "store/in-process".to_string();
    let version = kt::store::put_value(&key, &vec![1.5f64, 2.5])
        .await
        .unwrap();
    let first = kt::store::get(&key).await.unwrap();
    let second = kt::store::get_at(&key, version).await.unwrap();
    assert_eq!(first.value::<Vec<f64>>().unwrap(), [1.5, 2.5]);
    assert_eq!(first.bytes().as_ptr(), second.bytes().as_ptr());
    assert!(matches!(
        kt::store::get("store/never-put").await,
        Err(Error::KeyNotFound { .. })
    ));
    let timed_out = kt::store::wait_newer(&key, version)
        .timeout(Duration::from_millis(20))
        .await
        .expect_err("nothing newer comes");
    assert!(
        matches!(timed_out, Error::Timeout { waited_ms: 20, .. }),
        "{timed_out}"
    );
}

/// A worker whose store may hold `memory` bytes in memory and `disk` on disk, waiting
/// 50 ms for room before a put fails.
async fn keeper_with_budget(memory: u64, disk: u64) -> ActorRef<Keeper> {
    let compute = kt::Compute::new()
        .env(kt::store::MEMORY_ENV, memory.to_string())
        .env(kt::store::DISK_ENV, disk.to_string())
        .env(kt::store::FULL_WAIT_ENV, "50");
    Keeper::spawn().compute(compute).on(local()).await.unwrap()
}

#[kt::test]
async fn past_its_memory_budget_a_worker_spills_originals_and_still_serves_every_version() {
    let key = "store/spill".to_string();
    let keeper = keeper_with_budget(2_500_000, 10_000_000).await;
    for step in 1..=3u64 {
        keeper
            .put_pattern(key.clone(), 1_000_000, step as u8, step, None)
            .await
            .unwrap()
            .unwrap();
    }
    let usage = keeper.usage().await.unwrap();
    assert_eq!((usage.originals, usage.spilled), (3, 1), "{usage:?}");
    assert_eq!(
        (usage.memory_used, usage.disk_used),
        (2_000_000, 1_000_000),
        "{usage:?}"
    );
    // The spilled version comes from its file (copied: a file cannot be sealed), the
    // others as mapped memfds.
    for version in 1..=3u64 {
        let entry = kt::store::get_at(&key, Version(version)).await.unwrap();
        assert_eq!(
            digest(entry.bytes()),
            digest(&pattern(1_000_000, version as u8))
        );
    }
}

#[kt::test]
async fn past_its_memory_and_disk_budgets_a_put_fails_with_store_full() {
    let key = "store/full".to_string();
    let keeper = keeper_with_budget(1_500_000, 0).await;
    keeper
        .put_pattern(key.clone(), 1_000_000, 1, 1, None)
        .await
        .unwrap()
        .unwrap();
    match keeper
        .put_pattern(key.clone(), 1_000_000, 2, 2, None)
        .await
        .unwrap()
    {
        Err(Error::StoreFull {
            needed,
            budget,
            held,
        }) => {
            assert_eq!((needed, budget, held), (1_000_000, 1_500_000, 1_000_000));
        }
        other => panic!("expected StoreFull, got {other:?}"),
    }
    // Nothing was dropped silently: the first version is still there.
    let first = kt::store::get_at(&key, Version(1)).await.unwrap();
    assert_eq!(digest(first.bytes()), digest(&pattern(1_000_000, 1)));
}

/// `rm` frees what every holder keeps of the removed versions before it returns: a
/// worker's spilled original and its memfd, and another worker's cached copy.
#[kt::test]
async fn rm_frees_every_holders_copies_and_spill_files_before_it_returns() {
    let key = "store/rm-frees".to_string();
    let putter = keeper_with_budget(1_500_000, 10_000_000).await;
    for step in 1..=2u64 {
        putter
            .put_pattern(key.clone(), 1_000_000, step as u8, step, None)
            .await
            .unwrap()
            .unwrap();
    }
    let getter = Keeper::spawn().on(local()).await.unwrap();
    getter.get_digest(key.clone()).await.unwrap().unwrap();
    let (held, cached) = (putter.usage().await.unwrap(), getter.usage().await.unwrap());
    assert_eq!(
        (held.originals, held.spilled, held.disk_used),
        (2, 1, 1_000_000),
        "{held:?}"
    );
    assert_eq!(cached.cached, 1, "{cached:?}");

    let removed = kt::store::rm(&key, Versions::All).await.unwrap();
    assert_eq!(removed, [Version(1), Version(2)]);
    let (held, cached) = (putter.usage().await.unwrap(), getter.usage().await.unwrap());
    assert_eq!(
        (held.originals, held.memory_used, held.disk_used),
        (0, 0, 0),
        "{held:?}"
    );
    assert_eq!((cached.cached, cached.memory_used), (0, 0), "{cached:?}");
}
