//! The type registry and the encoded path: building actors from a type name and bytes
//! (what a worker does), and staying up when the bytes are wrong.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use kt::codec;
use kt::prelude::*;
use kt::registry;
use support::Accumulator;

fn accumulator_type() -> &'static str {
    <Accumulator as kt::Actor>::TYPE_NAME
}

#[test]
fn every_actor_type_registers_under_its_module_path() {
    let types = registry::registered_types();
    assert_eq!(accumulator_type(), "registry::support::Accumulator");
    for name in [
        "registry::support::Counter",
        "registry::support::Accumulator",
        "registry::support::Holder",
        "registry::support::Other",
    ] {
        assert!(types.contains(&name), "{name} missing from {types:?}");
    }
}

#[tokio::test]
async fn an_actor_is_built_from_its_type_name_and_encoded_arguments() {
    let args = codec::encode(&(41u64,), "args").unwrap();
    let actor =
        registry::spawn_by_name(accumulator_type(), Arc::from(args), SpawnOptions::default())
            .await
            .unwrap();
    assert_eq!(actor.call::<_, u64>("add", &(1u64,)).await.unwrap(), 42);
    let typed = ActorRef::<Accumulator>::from_erased(actor.clone()).unwrap();
    assert_eq!(typed.total().await.unwrap(), 42);
    assert!(matches!(
        ActorRef::<support::Other>::from_erased(actor),
        Err(Error::WrongActorType { .. })
    ));
}

#[tokio::test]
async fn unknown_types_and_bad_constructor_bytes_are_clear_errors() {
    let err = registry::spawn_by_name("nope::Nothing", Arc::from(vec![]), SpawnOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownActorType { type_name } if type_name == "nope::Nothing"),
        "{err:?}"
    );
    assert!(err.to_string().contains("#[kt::actor]"));

    let wrong = codec::encode(&("not a number", 3u8), "args").unwrap();
    let err = registry::spawn_by_name(
        accumulator_type(),
        Arc::from(wrong),
        SpawnOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { what, .. } if what.contains("constructor arguments")),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_calls_get_errors_and_the_actor_keeps_serving() {
    let args = codec::encode(&(1u64,), "args").unwrap();
    let actor =
        registry::spawn_by_name(accumulator_type(), Arc::from(args), SpawnOptions::default())
            .await
            .unwrap();

    let decode_reply = |bytes: Bytes| codec::decode_reply::<u64>(&bytes, "reply");
    let unknown = decode_reply(
        actor
            .call_encoded("no_such_method", Bytes::new())
            .await
            .unwrap(),
    );
    assert!(
        matches!(unknown, Err(Error::UnknownMethod { ref method, .. }) if method == "no_such_method"),
        "{unknown:?}"
    );

    let garbage = decode_reply(
        actor
            .call_encoded("add", Bytes::from_static(&[0xc1, 0xff, 0x13]))
            .await
            .unwrap(),
    );
    assert!(matches!(garbage, Err(Error::Decode { .. })), "{garbage:?}");

    let wrong_types = codec::encode(&("seven",), "args").unwrap();
    let wrong = decode_reply(
        actor
            .call_encoded("add", Bytes::from(wrong_types))
            .await
            .unwrap(),
    );
    match wrong {
        Err(Error::Decode { what, .. }) => assert!(what.contains("::add"), "{what}"),
        other => panic!("expected a decode error, got {other:?}"),
    }

    let truncated = codec::encode(&(5u64,), "args").unwrap();
    let short = decode_reply(
        actor
            .call_encoded(
                "add",
                Bytes::copy_from_slice(&truncated[..truncated.len() - 1]),
            )
            .await
            .unwrap(),
    );
    assert!(matches!(short, Err(Error::Decode { .. })), "{short:?}");

    assert_eq!(
        actor.call::<_, u64>("add", &(1u64,)).await.unwrap(),
        2,
        "still serving"
    );
}
