//! Bad input on a live call stream, over a real QUIC connection: wrong methods and
//! argument types get typed errors per call, garbage after a valid `Open` ends that stream
//! with a `Refused` frame, and the node keeps serving everything else (rule X3).

mod support;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use kt::prelude::*;
use kt_transport::Node;
use kt_transport::wire::frame::{
    Frame, PROTOCOL_VERSION, codec, decode_frame, encode_frame, max_message_bytes,
};
use kt_transport::wire::tls::{ClusterCa, SERVER_NAME};
use support::Accumulator;
use tokio_util::codec::FramedRead;

fn frame(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("encode");
    buf.to_vec()
}

fn call(call_id: u64, method: &str, args: &impl serde::Serialize) -> Vec<u8> {
    let payload = Bytes::from(kt::codec::encode(args, "args").expect("encode"));
    frame(&Frame::Call {
        call_id,
        method: method.into(),
        payload,
    })
}

/// A node serving one in-process `Accumulator`, and a client connection to it.
async fn served_accumulator() -> (quinn::Connection, u64, ActorRef<Accumulator>) {
    let ca = ClusterCa::generate().unwrap();
    let server = Node::start(&ca.issue("server").unwrap(), None).unwrap();
    let actor = Accumulator::spawn(10)
        .on(Arc::new(kt::InProcess))
        .await
        .unwrap();
    let address = server.export(&actor.raw().erase()).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(ca.issue("client").unwrap().client_config().unwrap());
    let conn = client
        .connect(server.address(), SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    std::mem::forget(client);
    std::mem::forget(server);
    (conn, address.label.id, actor)
}

/// Sends `bytes` on a new stream (after an `Open` for `actor_id`) and collects the frames
/// that come back until the node ends the stream.
async fn exchange(conn: &quinn::Connection, actor_id: u64, bytes: &[u8]) -> Vec<Frame> {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(&Frame::Open {
        version: PROTOCOL_VERSION,
        actor_id,
    }))
    .await
    .unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    let frames = FramedRead::new(recv, codec(max_message_bytes()));
    frames
        .filter_map(|body| async move { body.ok().map(|b| decode_frame(&b).unwrap()) })
        .collect()
        .await
}

fn reply_of(frames: &[Frame], id: u64) -> kt::Result<u64> {
    let payload = frames
        .iter()
        .find_map(|f| match f {
            Frame::Reply { call_id, payload } if *call_id == id => Some(payload.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply to call {id} in {frames:?}"));
    kt::codec::decode::<kt::Result<u64>>(&payload, "reply").unwrap()
}

#[kt::test]
async fn bad_calls_get_typed_errors_and_garbage_ends_only_its_stream() {
    let (conn, id, actor) = served_accumulator().await;

    let mut bytes = call(1, "add", &(1u64,));
    bytes.extend(call(2, "no_such_method", &()));
    bytes.extend(call(3, "add", &("one",)));
    bytes.extend(call(4, "add", &(1u64,)));
    let frames = exchange(&conn, id, &bytes).await;
    assert_eq!(reply_of(&frames, 1), Ok(11));
    assert!(matches!(
        reply_of(&frames, 2),
        Err(Error::UnknownMethod { .. })
    ));
    assert!(matches!(reply_of(&frames, 3), Err(Error::Decode { .. })));
    assert_eq!(
        reply_of(&frames, 4),
        Ok(12),
        "calls after bad ones still run, in order"
    );

    let mut garbage = call(5, "add", &(1u64,));
    garbage.extend([0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1]);
    garbage.extend(call(6, "add", &(100u64,)));
    let frames = exchange(&conn, id, &garbage).await;
    assert_eq!(reply_of(&frames, 5), Ok(13));
    assert!(
        frames.iter().any(|f| matches!(
            f,
            Frame::Refused {
                error: Error::Protocol { .. }
            }
        )),
        "{frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, Frame::Reply { call_id: 6, .. })),
        "nothing after garbage runs"
    );

    let frames = exchange(&conn, id, &call(7, "add", &(1u64,))).await;
    assert_eq!(reply_of(&frames, 7), Ok(14), "a new stream is served");
    assert_eq!(actor.total().await.unwrap(), 14);
}
