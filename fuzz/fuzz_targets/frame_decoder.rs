//! Feeds arbitrary bytes to the frame decoders exactly as a QUIC stream would: the
//! length-delimited codec cuts frames out of the byte stream, and each body is decoded
//! as an opening or control `Frame`, as a caller's call-stream frame, and as a node's
//! call-stream frame; the same bytes also go through the node-frame codec a route's
//! reply reader uses (which reads small replies in place). Nothing here may panic,
//! whatever the bytes.
#![no_main]

use bytes::BytesMut;
use kt_transport::wire::call::{NodeFrameCodec, decode_caller_frame, decode_node_frame};
use kt_transport::wire::frame::{codec, decode_frame};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = codec(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(body)) = decoder.decode(&mut buf) {
        let _ = decode_frame(&body);
        let _ = decode_caller_frame(body.clone());
        let _ = decode_node_frame(body);
    }
    let mut replies = NodeFrameCodec::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = replies.decode(&mut buf) {}
    let _ = decode_frame(data);
});
