//! Vectors of numbers in method signatures travel as raw bytes (one MessagePack `bin`),
//! also inside `Option` and `Result`, in arguments, replies and group broadcasts. The
//! worker here takes and sends messages of at most 1 MiB: a vector of 250,000 `f32`s is
//! 1,000,000 bytes raw and would be 1,250,000 as MessagePack floats, so each call below
//! fails with `MessageTooLarge` unless its vector went raw.

mod support;

use std::sync::Arc;

use kt::prelude::*;

#[kt::actor]
pub struct Numbers;

#[kt::actor]
impl Numbers {
    pub fn new() -> Self {
        Numbers
    }

    /// `n` floats, `i` being `i as f32 * scale`.
    pub fn floats(&self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| i as f32 * scale).collect()
    }

    /// The floats doubled.
    pub fn doubled(&self, values: Vec<f32>) -> Vec<f64> {
        values.iter().map(|v| f64::from(*v) * 2.0).collect()
    }

    /// `Some(bytes)` for a positive `n`, or `None`.
    pub fn maybe_bytes(&self, n: usize) -> Option<Vec<u8>> {
        (n > 0).then(|| (0..n).map(|i| i as u8).collect())
    }

    /// The sum of `values`, or an error for an empty vector.
    pub fn checked(&self, values: Vec<i32>) -> Result<Vec<i32>, String> {
        match values.is_empty() {
            true => Err("empty".into()),
            false => Ok(values.iter().map(|v| v + 1).collect()),
        }
    }

    /// The same floats again, as `kt::Result`.
    pub async fn echo(&self, values: Option<Vec<f32>>) -> kt::Result<Option<Vec<f32>>> {
        Ok(values)
    }
}

const N: usize = 250_000;

fn small_messages() -> kt::Compute {
    kt::Compute::new().env("KT_MAX_MESSAGE_BYTES", (1 << 20).to_string())
}

fn floats(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| i as f32 * scale).collect()
}

#[kt::test]
async fn a_returned_vector_of_floats_travels_as_raw_bytes() {
    let numbers = Numbers::spawn()
        .compute(small_messages())
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    assert_eq!(numbers.floats(N, 0.5).await.unwrap(), floats(N, 0.5));
}

#[kt::test]
async fn vectors_in_arguments_options_and_results_travel_raw_both_ways() {
    let numbers = Numbers::spawn()
        .compute(small_messages())
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    // 1 MB raw out; 2 MB back would be too large even raw: a quarter of it.
    let doubled = numbers.doubled(floats(N / 4, 1.0)).await.unwrap();
    assert_eq!(doubled.len(), N / 4);
    assert_eq!(doubled[3], 6.0);
    let error = numbers
        .doubled(floats(N, 1.0))
        .await
        .expect_err("2 MB back");
    assert!(matches!(error, Error::MessageTooLarge { .. }), "{error}");

    let bytes = numbers.maybe_bytes(900_000).await.unwrap().unwrap();
    assert_eq!((bytes.len(), bytes[300]), (900_000, 44));
    assert_eq!(numbers.maybe_bytes(0).await.unwrap(), None);

    let ints: Vec<i32> = (0..N as i32 / 2).collect();
    let plus_one = numbers.checked(ints).await.unwrap().unwrap();
    assert_eq!((plus_one[0], plus_one.len()), (1, N / 2));
    assert_eq!(
        numbers.checked(vec![]).await.unwrap(),
        Err("empty".to_string())
    );

    let echoed = numbers.echo(Some(floats(N, 0.25))).await.unwrap().unwrap();
    assert_eq!(echoed, Some(floats(N, 0.25)));
}

#[kt::test]
async fn a_group_broadcast_sends_and_receives_raw_vectors() {
    let group = Numbers::spawn_group(2)
        .compute(small_messages())
        .on(Arc::new(kt::LocalProcess::new()))
        .await
        .unwrap();
    let replies = group.all().echo(Some(floats(N, 2.0))).await.unwrap();
    assert_eq!(replies.len(), 2);
    for reply in replies {
        assert_eq!(reply.unwrap(), Some(floats(N, 2.0)));
    }
}

#[kt::test]
async fn in_one_process_vectors_are_passed_as_they_are() {
    let numbers = Numbers::spawn().on(Arc::new(kt::InProcess)).await.unwrap();
    assert_eq!(numbers.floats(10, 1.0).await.unwrap(), floats(10, 1.0));
    assert_eq!(numbers.doubled(vec![1.0]).await.unwrap(), vec![2.0]);
}
