//! The serving side's refusals, over real QUIC: TLS refusals before any frame is read,
//! bad first frames answered with `Refused`, and a node that keeps serving.

use super::*;
use crate::wire::frame::{
    Frame, PROTOCOL_VERSION, codec, decode_frame, encode_frame, max_message_bytes,
};
use crate::wire::tls::SERVER_NAME;
use bytes::BytesMut;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio_util::codec::FramedRead;

/// A raw QUIC client: `identity` presents a certificate, `trust` is the CA it accepts.
fn client(identity: Option<&Identity>, trust: &Identity) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(trust.roots().expect("roots"));
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain(), identity.key())
            .expect("cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![crate::wire::tls::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).expect("quic");
    let mut endpoint =
        quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Connects, sends `bytes` on a new stream, and returns the first frame that comes
/// back — or the error that ended the connection before any did. A call stream's binary
/// refusal comes back as the `Refused` frame it stands for.
async fn exchange(
    endpoint: &quinn::Endpoint,
    server: SocketAddr,
    bytes: &[u8],
) -> Result<Frame, String> {
    let conn = endpoint
        .connect(server, SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let mut frames = FramedRead::new(recv, codec(max_message_bytes()));
    match frames.next().await {
        Some(Ok(body)) => match crate::wire::call::decode_node_frame(body.clone()) {
            Ok(crate::wire::call::NodeFrame::Refused { error }) => Ok(Frame::Refused { error }),
            _ => decode_frame(&body).map_err(|e| e.to_string()),
        },
        Some(Err(e)) => Err(e.to_string()),
        None => Err("stream ended without a frame".into()),
    }
}

fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("encode");
    buf.to_vec()
}

fn server() -> (Arc<Node>, ClusterCa) {
    let ca = ClusterCa::generate().expect("ca");
    let node = Node::start(&ca.issue("server").expect("leaf"), None).expect("node");
    (node, ca)
}

fn unknown_actor() -> Vec<u8> {
    frame_bytes(&Frame::Open {
        version: PROTOCOL_VERSION,
        actor_id: 424242,
        host: None,
    })
}

#[tokio::test]
async fn a_peer_of_the_session_ca_is_served() {
    let (node, ca) = server();
    let me = ca.issue("client").expect("leaf");
    let reply = exchange(&client(Some(&me), &me), node.address(), &unknown_actor()).await;
    assert!(
        matches!(
            reply,
            Ok(Frame::Refused {
                error: Error::Unavailable { .. }
            })
        ),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_peer_without_a_certificate_is_refused_before_any_frame_is_read() {
    let (node, ca) = server();
    let trust = ca.issue("trust only").expect("leaf");
    let reply = exchange(&client(None, &trust), node.address(), &unknown_actor()).await;
    // A served stream would answer `Refused`; a refused handshake answers nothing.
    let error = reply.expect_err("the server must not serve a peer without a certificate");
    assert!(!error.contains("Refused"), "{error}");
}

#[tokio::test]
async fn a_peer_with_a_certificate_from_another_ca_is_refused_before_any_frame_is_read() {
    let (node, ca) = server();
    let trust = ca.issue("trust only").expect("leaf");
    let stranger = ClusterCa::generate()
        .expect("ca")
        .issue("stranger")
        .expect("leaf");
    let mut stranger_trusting_server = stranger;
    stranger_trusting_server.ca_der = trust.ca_der.clone();
    let reply = exchange(
        &client(Some(&stranger_trusting_server), &trust),
        node.address(),
        &unknown_actor(),
    )
    .await;
    let error = reply.expect_err("the server must not serve a certificate from another CA");
    assert!(!error.contains("Refused"), "{error}");
}

#[tokio::test]
async fn bad_first_frames_are_refused_with_a_reason_and_the_node_keeps_serving() {
    let (node, ca) = server();
    let me = ca.issue("client").expect("leaf");
    let endpoint = client(Some(&me), &me);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", vec![0, 0, 0, 3, 0xc1, 0xc1, 0xc1]),
        ("truncated", {
            let mut bytes = unknown_actor();
            bytes.truncate(bytes.len() - 2);
            bytes
        }),
        ("oversized", {
            let mut bytes = u32::MAX.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0; 32]);
            bytes
        }),
        (
            "another version",
            frame_bytes(&Frame::Open {
                version: 99,
                actor_id: 1,
                host: None,
            }),
        ),
        (
            "a reply stream's header as first frame",
            frame_bytes(&Frame::ReplyStream {
                stream: 0,
                call_id: 1,
                len: 0,
            }),
        ),
    ];
    for (case, bytes) in cases {
        match exchange(&endpoint, node.address(), &bytes).await {
            Ok(Frame::Refused {
                error: Error::Protocol { .. } | Error::MessageTooLarge { .. },
            }) => {}
            other => panic!("{case}: expected a Refused frame, got {other:?}"),
        }
    }
    let reply = exchange(&endpoint, node.address(), &unknown_actor()).await;
    assert!(
        matches!(
            reply,
            Ok(Frame::Refused {
                error: Error::Unavailable { .. }
            })
        ),
        "still serving: {reply:?}"
    );
}

/// An exported actor that takes the call streams lent to it, as an idle actor's task
/// does, and records the calls and kills the serving task hands it instead.
struct Lender {
    label: kt_core::ActorLabel,
    lent: Mutex<Vec<Arc<dyn kt_core::backend::CallSource>>>,
    lends: tokio::sync::Notify,
    mailed: Mutex<Vec<u64>>,
    killed: tokio::sync::Notify,
}

impl kt_core::backend::EncodedRoute for Lender {
    fn label(&self) -> &kt_core::ActorLabel {
        &self.label
    }

    fn send_encoded(
        &self,
        _method: &str,
        payload: bytes::Bytes,
        reply: kt_core::backend::EncodedReply,
    ) -> kt_core::backend::Accepted {
        lock(&self.mailed).push(payload.len() as u64);
        reply.deliver_slice(&[]);
        kt_core::backend::Accepted::Now
    }

    fn gone(&self) -> Error {
        Error::ActorDied {
            actor: self.label.clone(),
            cause: kt_core::DeathCause::Killed,
        }
    }

    fn kill(&self) {
        self.killed.notify_one();
    }

    fn is_alive(&self) -> bool {
        true
    }

    fn stopped(&self) -> futures_util::future::BoxFuture<'static, kt_core::DeathCause> {
        Box::pin(futures_util::future::pending())
    }

    fn lend(&self, source: Arc<dyn kt_core::backend::CallSource>) -> bool {
        lock(&self.lent).push(source);
        self.lends.notify_one();
        true
    }
}

/// The next call a lent source reads: its method and reply slot.
async fn lent_call(
    source: &Arc<dyn kt_core::backend::CallSource>,
) -> (String, kt_core::backend::EncodedReply) {
    let read = std::future::poll_fn(|cx| {
        let mut taken = None;
        let mut take = |method: &str, _args: &[u8], reply| taken = Some((method.into(), reply));
        match source.poll_call(cx, &mut take) {
            std::task::Poll::Ready(true) => std::task::Poll::Ready(taken.expect("taken")),
            std::task::Poll::Ready(false) => panic!("the source was taken back"),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("a call comes")
}

/// The call id of the next reply on a call stream.
async fn next_reply(
    replies: &mut FramedRead<quinn::RecvStream, crate::wire::frame::FrameCodec>,
) -> u64 {
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), replies.next())
        .await
        .expect("a reply")
        .expect("open")
        .expect("a frame");
    match crate::wire::call::decode_node_frame(body).expect("a reply frame") {
        crate::wire::call::NodeFrame::Reply { call_id, .. } => call_id,
        other => panic!("not a reply: {other:?}"),
    }
}

#[tokio::test]
async fn an_idle_actor_reads_its_stream_and_gives_it_back_while_a_method_runs() {
    let (node, ca) = server();
    let lender = Arc::new(Lender {
        label: kt_core::ActorLabel {
            id: 77,
            type_name: "Lender".into(),
            name: None,
        },
        lent: Mutex::default(),
        lends: tokio::sync::Notify::new(),
        mailed: Mutex::default(),
        killed: tokio::sync::Notify::new(),
    });
    node.export(&ErasedActor::new(lender.clone(), None))
        .expect("export");
    let me = ca.issue("client").expect("leaf");
    let conn = client(Some(&me), &me)
        .connect(node.address(), SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, recv) = conn.open_bi().await.expect("stream");
    let mut replies = FramedRead::new(recv, codec(max_message_bytes()));
    let ten_s = std::time::Duration::from_secs(10);
    let opened = frame_bytes(&Frame::Open {
        version: PROTOCOL_VERSION,
        actor_id: 77,
        host: None,
    });
    send.write_all(&opened).await.expect("open");
    // Nothing to read and no call unanswered: the stream is lent to the idle actor.
    tokio::time::timeout(ten_s, lender.lends.notified())
        .await
        .expect("lent");
    let source = lock(&lender.lent)[0].clone();
    let mut calls = BytesMut::new();
    crate::wire::call::write_method(&mut calls, 0, "work").expect("method");
    crate::wire::call::write_call(&mut calls, 1, 0, &[0x90]).expect("call");
    send.write_all(&calls).await.expect("calls");
    let (method, reply) = lent_call(&source).await;
    assert_eq!(method, "work", "the actor read the call itself");
    // The method awaits: the actor gives the stream back, and the serving task hears a
    // kill sent behind the call while the method runs.
    source.give_back();
    let mut kill = BytesMut::new();
    crate::wire::call::write_kill(&mut kill);
    send.write_all(&kill).await.expect("kill");
    tokio::time::timeout(ten_s, lender.killed.notified())
        .await
        .expect("the kill is read while the method runs");
    // Calls that come while the method runs go to the mailbox, after it.
    let mut next = BytesMut::new();
    crate::wire::call::write_call(&mut next, 2, 0, &[0x91, 0x01]).expect("call");
    send.write_all(&next).await.expect("call");
    assert_eq!(next_reply(&mut replies).await, 2);
    assert_eq!(*lock(&lender.mailed), [2], "call 2 went to the mailbox");
    // The method ends; once its call is answered, the stream is lent again.
    reply.deliver_slice(&[]);
    assert_eq!(next_reply(&mut replies).await, 1);
    tokio::time::timeout(ten_s, lender.lends.notified())
        .await
        .expect("lent again once every call is answered");
    let again = lock(&lender.lent)[1].clone();
    let mut last = BytesMut::new();
    crate::wire::call::write_call(&mut last, 3, 0, &[0x90]).expect("call");
    send.write_all(&last).await.expect("call");
    let (method, _reply) = lent_call(&again).await;
    assert_eq!(method, "work");
}
