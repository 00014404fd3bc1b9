//! A tour of kt's actor semantics with one small actor: spawn, eager calls and their
//! order, a method's own error, a panic followed by a restart, and a group.
//!
//! Run it with `cargo run --example counter`. Every actor runs in a child process of this
//! example (the embedded default placement); their output lines are prefixed with the
//! actor's name and pid.

use kt::prelude::*;
use serde::{Deserialize, Serialize};

/// A method's own error type: it travels back to the caller as a typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum CounterError {
    #[error("cannot take {n} from {value}")]
    Underflow { value: u64, n: u64 },
}

#[kt::actor]
pub struct Counter {
    value: u64,
}

#[kt::actor]
impl Counter {
    /// The constructor: its arguments are what `Counter::spawn` takes.
    pub fn new(start: u64) -> Self {
        Counter { value: start }
    }

    pub fn increment(&mut self) -> u64 {
        self.value += 1;
        self.value
    }

    pub async fn add(&mut self, n: u64) -> u64 {
        self.value += n;
        self.value
    }

    pub fn get(&self) -> u64 {
        self.value
    }

    pub fn take(&mut self, n: u64) -> Result<u64, CounterError> {
        self.value = self.value.checked_sub(n).ok_or(CounterError::Underflow {
            value: self.value,
            n,
        })?;
        Ok(self.value)
    }

    pub fn crash(&mut self) -> u64 {
        panic!("the counter was asked to crash")
    }

    /// Which member of a group this is.
    pub fn rank(&self, ctx: &Context<Self>) -> usize {
        ctx.group().map_or(0, |member| member.rank)
    }
}

#[kt::main]
async fn main() -> kt::Result<()> {
    // Spawn: the constructor's arguments, then options, then `.await`.
    let counter = Counter::spawn(0).max_restarts(1).await?;
    println!("spawned {}", counter.label());

    // Eager calls: each is sent when made; the futures only wait for replies,
    // and calls from one caller run in the order they were made.
    let (a, b, c) = (counter.increment(), counter.increment(), counter.add(10));
    let (a, b, c) = (a.await?, b.await?, c.await?);
    println!("three calls before any await: {a}, {b}, {c}");
    assert_eq!((a, b, c), (1, 2, 12));

    // A method's own error comes back as a value: kt::Result<Result<u64, CounterError>>.
    match counter.take(100).await? {
        Err(error) => println!("the method said no: {error}"),
        Ok(left) => unexpected(&format!("took 100 from 12 and {left} are left")),
    }

    // A panic reaches the caller as ActorPanicked; the actor restarts from its
    // original arguments (max_restarts(1)) and answers the next call.
    match counter.crash().await {
        Err(Error::ActorPanicked {
            method, message, ..
        }) => println!("`{method}` panicked: {message}"),
        other => unexpected(&format!("`crash` answered {other:?}, not ActorPanicked")),
    }
    let after = counter.get().await?;
    println!("after the restart the counter is back at {after}");
    assert_eq!(after, 0);

    // A group: every member knows its rank; all() goes to every member, any() to one.
    let group = Counter::spawn_group(4, 100).await?;
    let ranks = group.all().rank().await?;
    println!("group ranks: {ranks:?}");
    for _ in 0..8 {
        group.any().increment().await?;
    }
    let values = group.all().get().await?;
    println!("after 8 round-robin increments: {values:?}");
    assert_eq!(values, vec![102; 4]);

    // Killing an actor: every later call fails at once with ActorDied.
    counter.kill();
    match counter.get().await {
        Err(error @ Error::ActorDied { .. }) => println!("after kill: {error}"),
        other => unexpected(&format!(
            "a call after kill() answered {other:?}, not ActorDied"
        )),
    }
    Ok(())
}

/// Ends the tour with a failure status: kt did not behave as the tour says it does
/// (CI runs this example and must notice).
fn unexpected(what: &str) -> ! {
    eprintln!("unexpected: {what}");
    std::process::exit(1)
}
