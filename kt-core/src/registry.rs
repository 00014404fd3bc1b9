//! The actor-type registry: every `#[kt::actor]` type registers itself at link time
//! (through the `inventory` crate) under its stable [`Actor::TYPE_NAME`], with the
//! functions that build it. A worker process uses it to build an actor it has only the
//! name and the encoded constructor arguments of ([`spawn_by_name`]); it builds only
//! types registered in its own binary (rule X1).

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::actor::{Actor, MethodInfo};
use crate::codec;
use crate::error::{Error, Result};
use crate::options::SpawnOptions;
use crate::placement::{Placed, SpawnArgs};
use crate::route::ErasedActor;
use crate::runtime::spawn_in_process;

/// A registered actor type: its name and the functions that build it.
#[derive(Clone, Copy)]
pub struct ActorType {
    /// The stable type name.
    pub type_name: &'static str,
    /// Its public methods.
    pub methods: &'static [MethodInfo],
    /// Spawns the actor in this process from typed or encoded arguments.
    pub spawn_in_process: fn(SpawnArgs, SpawnOptions) -> BoxFuture<'static, Result<Placed>>,
    /// Encodes typed constructor arguments (`Actor::Args`, boxed).
    pub encode_args: fn(&(dyn Any + Send)) -> Result<Vec<u8>>,
}

impl std::fmt::Debug for ActorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorType")
            .field("type_name", &self.type_name)
            .finish()
    }
}

impl ActorType {
    /// The entry for `A`; `#[kt::actor]` submits one per actor type.
    pub const fn of<A: Actor>() -> ActorType {
        ActorType {
            type_name: A::TYPE_NAME,
            methods: A::METHODS,
            spawn_in_process: spawn_boxed::<A>,
            encode_args: encode_args::<A>,
        }
    }
}

impl ActorType {
    /// True when `method` is marked `#[kt(idempotent)]` (safe to run again).
    pub fn is_idempotent(&self, method: &str) -> bool {
        self.methods
            .iter()
            .any(|info| info.idempotent && info.name == method)
    }
}

fn spawn_boxed<A: Actor>(
    args: SpawnArgs,
    options: SpawnOptions,
) -> BoxFuture<'static, Result<Placed>> {
    Box::pin(spawn_in_process::<A>(args, options))
}

fn encode_args<A: Actor>(args: &(dyn Any + Send)) -> Result<Vec<u8>> {
    let what = format!("the constructor arguments of `{}`", A::TYPE_NAME);
    match args.downcast_ref::<A::Args>() {
        Some(args) => codec::encode(args, &what),
        None => Err(Error::Encode {
            what,
            message: "the arguments have another type".into(),
        }),
    }
}

inventory::collect!(ActorType);

/// The registered type of this name.
pub fn find(type_name: &str) -> Result<&'static ActorType> {
    inventory::iter::<ActorType>
        .into_iter()
        .find(|entry| entry.type_name == type_name)
        .ok_or_else(|| Error::UnknownActorType {
            type_name: type_name.to_string(),
        })
}

/// The names of every actor type registered in this binary, sorted.
pub fn registered_types() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<ActorType>
        .into_iter()
        .map(|e| e.type_name)
        .collect();
    names.sort_unstable();
    names
}

/// Builds an actor in this process from its type name and encoded constructor
/// arguments, and returns a type-erased handle to it.
pub async fn spawn_by_name(
    type_name: &str,
    args: Arc<[u8]>,
    options: SpawnOptions,
) -> Result<ErasedActor> {
    let entry = find(type_name)?;
    let placed = (entry.spawn_in_process)(SpawnArgs::Encoded(args), options).await?;
    Ok(placed.into_erased())
}
