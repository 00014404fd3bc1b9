//! Large messages between processes: replies past the in-band size travel whole on
//! streams of their own, and a message over the limit is a clear error that leaves the
//! actor serving.

mod support;

use std::sync::Arc;

use kt::prelude::*;
use support::Blobs;

fn local() -> Arc<dyn kt::Placement> {
    Arc::new(kt::LocalProcess::new())
}

fn expected(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[kt::test]
async fn large_replies_arrive_whole_and_small_calls_pass_them() {
    let blobs = Blobs::spawn().max_concurrency(4).on(local()).await.unwrap();
    // Three large replies in flight at once, each on a stream of its own, and small
    // calls between them.
    let sizes = [(3 << 20, 1u8), (1 << 20, 2), ((5 << 20) + 7, 3)];
    let large: Vec<_> = sizes
        .iter()
        .map(|&(len, seed)| blobs.blob(len, seed))
        .collect();
    let small = blobs.blob(10, 9).await.unwrap();
    assert_eq!(&small[..], &expected(10, 9)[..]);
    for (call, (len, seed)) in large.into_iter().zip(sizes) {
        let got = call.await.unwrap();
        assert_eq!(got.len(), len);
        assert!(
            got[..] == expected(len, seed)[..],
            "payload of {len} bytes intact"
        );
    }
    // Large arguments go the other way.
    let payload = bytes::Bytes::from(expected(2 << 20, 5));
    assert_eq!(blobs.measure(payload).await.unwrap(), 2 << 20);
}

#[kt::test]
async fn a_reply_over_the_limit_fails_with_message_too_large_and_the_actor_keeps_serving() {
    const LIMIT: usize = 1 << 20;
    let blobs = Blobs::spawn()
        .compute(Compute::new().env("KT_MAX_MESSAGE_BYTES", LIMIT.to_string()))
        .on(local())
        .await
        .unwrap();
    match blobs.blob(2 * LIMIT, 0).await {
        Err(Error::MessageTooLarge { size, limit }) => {
            assert_eq!(limit, LIMIT);
            assert!(size > LIMIT, "{size}");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(blobs.blob(LIMIT / 2, 1).await.unwrap().len(), LIMIT / 2);
}

#[kt::test]
async fn arguments_over_the_limit_fail_before_they_are_sent() {
    let blobs = Blobs::spawn().on(local()).await.unwrap();
    let limit = kt_transport::wire::frame::max_message_bytes();
    let payload = bytes::Bytes::from(vec![0u8; limit + 1]);
    match blobs.measure(payload).await {
        Err(Error::MessageTooLarge { size, limit: told }) => {
            assert_eq!(told, limit);
            assert!(size > limit);
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(
        blobs
            .measure(bytes::Bytes::from_static(b"ok"))
            .await
            .unwrap(),
        2
    );
}
