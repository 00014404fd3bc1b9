//! `kt::Blob` in arguments and replies between local processes: a large blob in a reply
//! to a caller on the same host comes as a sealed memfd (the very pages the actor wrote,
//! when it wrote them in shared memory), small blobs and arguments travel inline, and
//! the bytes always arrive whole.

mod support;

use std::sync::Arc;

use support::blobs::Bulk;
use support::store::{digest, in_a_store_memfd, pattern};

fn local() -> Arc<dyn kt::Placement> {
    Arc::new(kt::LocalProcess::new())
}

const LARGE: usize = (8 << 20) + 3;

#[kt::test]
async fn a_blob_written_in_shared_memory_reaches_a_caller_on_this_host_as_the_same_memfd() {
    let bulk = Bulk::spawn().on(local()).await.unwrap();
    let blob = bulk.shared(LARGE, 3).await.unwrap().unwrap();
    assert_eq!(blob.len(), LARGE);
    assert!(blob.is_shared(), "{blob:?}");
    assert!(in_a_store_memfd(blob.as_ptr()), "not a mapping of a memfd");
    assert_eq!(digest(&blob), digest(&pattern(LARGE, 3)));
}

#[kt::test]
async fn a_blob_of_plain_bytes_is_handed_over_as_shared_memory_too() {
    let bulk = Bulk::spawn().on(local()).await.unwrap();
    let blob = bulk.plain(LARGE, 4).await.unwrap();
    assert!(blob.is_shared(), "{blob:?}");
    assert_eq!(digest(&blob), digest(&pattern(LARGE, 4)));
}

#[kt::test]
async fn small_blobs_and_blob_arguments_travel_inline_and_arrive_whole() {
    let bulk = Bulk::spawn().on(local()).await.unwrap();
    let small = bulk.plain(1000, 5).await.unwrap();
    assert!(!small.is_shared());
    assert_eq!(&small[..], &pattern(1000, 5)[..]);
    let arg = kt::Blob::from(pattern(LARGE, 6));
    let (len, sum) = bulk.digest_of(arg.clone()).await.unwrap();
    assert_eq!((len, sum), (LARGE, digest(&arg)));
}

#[kt::test]
async fn a_reply_with_many_blobs_brings_each_in_its_place() {
    let bulk = Bulk::spawn().on(local()).await.unwrap();
    let len = 100 << 10;
    let (first, blobs, last) = bulk.many(5, len).await.unwrap();
    assert_eq!((first, blobs.len(), last), (1, 5, 2));
    for (i, blob) in blobs.iter().enumerate() {
        assert!(blob.is_shared());
        assert_eq!(&blob[..], &pattern(len, i as u8)[..], "blob {i}");
    }
}

#[kt::test]
async fn between_two_actors_on_one_host_a_large_blob_is_shared_memory() {
    let placement = local();
    let a = Bulk::spawn().on(placement.clone()).await.unwrap();
    let b = Bulk::spawn().on(placement).await.unwrap();
    let (shared, sum) = a.fetch_from(b.clone(), LARGE, 7).await.unwrap().unwrap();
    assert!(shared);
    assert_eq!(sum, digest(&pattern(LARGE, 7)));
}

#[kt::test]
async fn in_one_process_a_blob_is_the_same_bytes() {
    let bulk = Bulk::spawn().on(Arc::new(kt::InProcess)).await.unwrap();
    let blob = bulk.shared(LARGE, 8).await.unwrap().unwrap();
    assert!(blob.is_shared());
    assert_eq!(digest(&blob), digest(&pattern(LARGE, 8)));
}
