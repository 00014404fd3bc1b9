//! Bad input on a live call stream, over a real QUIC connection: wrong methods and
//! argument types get typed errors per call, garbage after a valid `Open` ends that stream
//! with a `Refused` frame, and the node keeps serving everything else (rule X3).

mod support;

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::StreamExt;
use kt::prelude::*;
use kt_transport::Node;
use kt_transport::wire::call::{self, NodeFrame, decode_node_frame};
use kt_transport::wire::frame::{Frame, PROTOCOL_VERSION, codec, encode_frame, max_message_bytes};
use kt_transport::wire::tls::{ClusterCa, SERVER_NAME};
use support::Accumulator;
use tokio_util::codec::FramedRead;

fn frame(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("encode");
    buf.to_vec()
}

/// The bytes of calls on one stream, each method named once before its first call.
#[derive(Default)]
struct Calls {
    bytes: BytesMut,
    methods: Vec<String>,
}

impl Calls {
    fn call(mut self, call_id: u64, method: &str, args: &impl serde::Serialize) -> Self {
        let index = match self.methods.iter().position(|m| m == method) {
            Some(index) => index,
            None => {
                call::write_method(&mut self.bytes, self.methods.len() as u16, method).unwrap();
                self.methods.push(method.into());
                self.methods.len() - 1
            }
        };
        let args = kt::codec::encode(args, "args").expect("encode");
        call::write_call(&mut self.bytes, call_id, index as u16, &args).unwrap();
        self
    }

    fn raw(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
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
async fn exchange(conn: &quinn::Connection, actor_id: u64, calls: Calls) -> Vec<NodeFrame> {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&frame(&Frame::Open {
        version: PROTOCOL_VERSION,
        actor_id,
        host: None,
    }))
    .await
    .unwrap();
    send.write_all(&calls.bytes).await.unwrap();
    send.finish().unwrap();
    let frames = FramedRead::new(recv, codec(max_message_bytes()));
    frames
        .filter_map(|body| async move { body.ok().map(|b| decode_node_frame(b).unwrap()) })
        .collect()
        .await
}

fn reply_of(frames: &[NodeFrame], id: u64) -> kt::Result<u64> {
    let payload = frames
        .iter()
        .find_map(|f| match f {
            NodeFrame::Reply { call_id, payload } if *call_id == id => Some(payload.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply to call {id} in {frames:?}"));
    kt::codec::decode_reply::<u64>(payload.as_slice(), "reply")
}

#[kt::test]
async fn bad_calls_get_typed_errors_and_garbage_ends_only_its_stream() {
    let (conn, id, actor) = served_accumulator().await;

    let calls = Calls::default()
        .call(1, "add", &(1u64,))
        .call(2, "no_such_method", &())
        .call(3, "add", &("one",))
        .call(4, "add", &(1u64,));
    let frames = exchange(&conn, id, calls).await;
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

    let garbage = Calls::default()
        .call(5, "add", &(1u64,))
        .raw(&[0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1])
        .call(6, "add", &(100u64,));
    let frames = exchange(&conn, id, garbage).await;
    assert_eq!(reply_of(&frames, 5), Ok(13));
    assert!(
        frames.iter().any(|f| matches!(
            f,
            NodeFrame::Refused {
                error: Error::Protocol { .. }
            }
        )),
        "{frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|f| matches!(f, NodeFrame::Reply { call_id: 6, .. })),
        "nothing after garbage runs"
    );

    let frames = exchange(&conn, id, Calls::default().call(7, "add", &(1u64,))).await;
    assert_eq!(reply_of(&frames, 7), Ok(14), "a new stream is served");
    assert_eq!(actor.total().await.unwrap(), 14);
}
