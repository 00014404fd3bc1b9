//! Support for the code `#[kt::actor]` generates. Not a public API: names here may
//! change in any release. Generated code reaches serde, inventory and kt's helpers only
//! through this module, so users need none of them in their own `Cargo.toml`.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::actor::{
    Actor, Context, GroupHandle, Handle, Message, MethodInfo, Outcome, PanicAnswer,
};
pub use crate::actor_ref::RawRef;
pub use crate::call::{Call, GroupCall};
pub use crate::codec;
pub use crate::codec::raw::{RawSlice, RawVec};
pub use crate::error::{DeathCause, Error, Result};
pub use crate::group::{GroupMembers, SpawnGroup};
pub use crate::registry::ActorType;
pub use crate::reply::{EncodedReply, KeptReply, Reply, encode_reply_as};
pub use crate::spawn::Spawn;
pub use inventory;
pub use serde;

/// Implemented by `#[kt::actor]` on the struct: names the actor type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not marked as an actor",
    label = "#[kt::actor] is on this impl block but not on the struct",
    note = "add #[kt::actor] to the struct `{Self}` as well as to its impl block"
)]
pub trait ActorStruct {
    /// The stable type name (`module::path::Type`, or the `name = \"...\"` option).
    const TYPE_NAME: &'static str;
}

use crate::runtime::panic_message;

/// Types that can travel to and from an actor: arguments, return values, constructor
/// arguments. Checked by generated code so that a wrong type is reported at the method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross an actor boundary: it must implement serde's `Serialize` and `DeserializeOwned`, and be `Send + 'static`",
    label = "this type is sent to or returned from an actor",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`; handles and large data should be owned types (use `String`, not `&str`)"
)]
pub trait Wire {}
// Bounds on the impl, not supertraits: a type that misses several of them gets one error.
impl<T> Wire for T where T: Serialize + DeserializeOwned + Send + 'static {}

/// A compile-time check that `T` can cross an actor boundary.
pub const fn assert_wire<T: Wire>() {}

/// Runs a synchronous method, answers its caller, and reports a panic to the runtime.
pub fn run_sync<A, T>(
    ctx: &Context<A>,
    method: &'static str,
    reply: Reply<T>,
    f: impl FnOnce() -> T,
) -> Outcome
where
    A: Actor,
    T: Serialize + Send + 'static,
{
    answer(
        ctx,
        method,
        reply,
        std::panic::catch_unwind(AssertUnwindSafe(f)),
    )
}

/// Runs an `async` method, answers its caller, and reports a panic to the runtime.
pub async fn run_async<A, T, F>(
    ctx: &Context<A>,
    method: &'static str,
    reply: Reply<T>,
    fut: F,
) -> Outcome
where
    A: Actor,
    T: Serialize + Send + 'static,
    F: Future<Output = T>,
{
    answer(
        ctx,
        method,
        reply,
        AssertUnwindSafe(fut).catch_unwind().await,
    )
}

/// Sends a method's value, or its panic as `ActorPanicked`, to the caller.
fn answer<A, T>(
    ctx: &Context<A>,
    method: &'static str,
    reply: Reply<T>,
    ran: std::thread::Result<T>,
) -> Outcome
where
    A: Actor,
    T: Serialize + Send + 'static,
{
    match ran {
        Ok(value) => {
            reply.send(Ok(value));
            Outcome::Done
        }
        Err(payload) => {
            let message = panic_message(&*payload);
            let error = Error::ActorPanicked {
                actor: ctx.label().clone(),
                method: method.to_string(),
                message: message.clone(),
            };
            let answer = PanicAnswer::new(move || reply.send(Err(error)));
            Outcome::Panicked {
                method,
                message,
                answer,
            }
        }
    }
}

/// Answers a `&mut self` call that reached `handle_shared`, which the runtime never does.
pub fn misrouted<A: Actor, T: Serialize + Send + 'static>(
    ctx: &Context<A>,
    method: &'static str,
    reply: Reply<T>,
) -> Outcome {
    reply.send(Err(Error::ActorDied {
        actor: ctx.label().clone(),
        cause: crate::error::DeathCause::Panicked {
            method: method.to_string(),
            message: "internal error: an exclusive call was routed as a shared one".into(),
        },
    }));
    Outcome::Done
}

/// Decodes a method's encoded arguments for [`Actor::decode_message`].
#[allow(clippy::result_large_err)]
pub fn decode_args<Args: DeserializeOwned>(
    type_name: &str,
    method: &str,
    payload: &[u8],
    reply: EncodedReply,
) -> std::result::Result<(Args, EncodedReply), (Error, EncodedReply)> {
    match codec::decode::<Args>(
        payload,
        format_args!("arguments of `{type_name}::{method}`"),
    ) {
        Ok(args) => Ok((args, reply)),
        Err(error) => Err((error, reply)),
    }
}

/// The error for a method name the actor type does not have.
pub fn unknown_method(type_name: &str, method: &str, reply: EncodedReply) -> (Error, EncodedReply) {
    (
        Error::UnknownMethod {
            type_name: type_name.to_string(),
            method: method.to_string(),
        },
        reply,
    )
}

/// Turns a constructor's or hook's `Err(e)` into the message kt reports.
pub fn error_text(error: impl std::fmt::Display) -> String {
    error.to_string()
}
