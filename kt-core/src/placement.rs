//! Placement: where an actor runs. Every spawn goes through a [`Placement`].
//!
//! A placement turns a [`SpawnRequest`] (the actor type, its constructor arguments,
//! its [`SpawnOptions`]) into a running actor and a route to it. kt-core provides two:
//!
//! - [`InProcess`]: a tokio task in this process, called with typed messages — no
//!   encoding at all. The default until a process-level backend is configured.
//! - [`Loopback`]: also in this process, but built from its registered type name and
//!   encoded arguments, and called through encoded messages only, exactly as a remote
//!   worker would be. Tests run the same suite against it to catch serialization bugs
//!   without processes or sockets.
//!
//! The local-process and Kubernetes backends implement the same trait.

use std::any::Any;
use std::sync::{Arc, LazyLock, RwLock};

use futures_util::future::BoxFuture;

use crate::actor::Actor;
use crate::actor_ref::{ActorRef, RawRef};
use crate::error::Result;
use crate::options::SpawnOptions;
use crate::registry::{self, ActorType};
use crate::route::ErasedActor;

/// Where actors run: turns spawn requests into running actors.
pub trait Placement: Send + Sync + 'static {
    /// A short name for messages and logs (`"in-process"`, `"local-process"`, ...).
    fn name(&self) -> &str;

    /// Starts one actor and resolves once it has been constructed and `on_start` ran.
    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'static, Result<Placed>>;

    /// Finds a named actor this placement hosts outside this process, if any.
    fn lookup(&self, name: &str) -> BoxFuture<'static, Result<Option<Placed>>> {
        let _ = name;
        Box::pin(async { Ok(None) })
    }
}

/// What to spawn: the type, its constructor's arguments, and how to run it.
pub struct SpawnRequest {
    /// The actor type, with the functions that build it.
    pub actor_type: ActorType,
    /// The constructor's arguments.
    pub args: SpawnArgs,
    /// How to run the actor.
    pub options: SpawnOptions,
}

impl SpawnRequest {
    /// The constructor's arguments in encoded form, encoding them if they are typed.
    pub fn encoded_args(&self) -> Result<Arc<[u8]>> {
        match &self.args {
            SpawnArgs::Encoded(bytes) => Ok(bytes.clone()),
            SpawnArgs::Typed(any) => (self.actor_type.encode_args)(&**any).map(Arc::from),
        }
    }
}

/// A constructor's arguments: typed (spawned from this process's code) or encoded
/// (spawned by type name, or shared by the members of a group).
pub enum SpawnArgs {
    /// The `Actor::Args` tuple, boxed.
    Typed(Box<dyn Any + Send>),
    /// The MessagePack encoding of the `Actor::Args` tuple.
    Encoded(Arc<[u8]>),
}

/// A spawned actor, as a placement hands it back.
pub struct Placed {
    inner: PlacedInner,
}

enum PlacedInner {
    InProcess {
        typed: Box<dyn Any + Send>,
        erased: ErasedActor,
    },
    Elsewhere(ErasedActor),
}

impl Placed {
    pub(crate) fn in_process<A: Actor>(raw: RawRef<A>, erased: ErasedActor) -> Self {
        Placed {
            inner: PlacedInner::InProcess {
                typed: Box::new(raw),
                erased,
            },
        }
    }

    /// An actor reached through an encoded route (another process, a pod, loopback).
    pub fn elsewhere(erased: ErasedActor) -> Self {
        Placed {
            inner: PlacedInner::Elsewhere(erased),
        }
    }

    /// The typed handle; fails if the actor is not an `A`.
    pub fn into_ref<A: Actor>(self) -> Result<ActorRef<A>> {
        match self.inner {
            PlacedInner::InProcess { typed, erased } => match typed.downcast::<RawRef<A>>() {
                Ok(raw) => Ok(ActorRef::from_raw(*raw)),
                Err(_) => ActorRef::from_erased(erased),
            },
            PlacedInner::Elsewhere(erased) => ActorRef::from_erased(erased),
        }
    }

    /// The type-erased handle.
    pub fn into_erased(self) -> ErasedActor {
        match self.inner {
            PlacedInner::InProcess { erased, .. } | PlacedInner::Elsewhere(erased) => erased,
        }
    }
}

/// Runs actors as tokio tasks in this process, called with typed messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

impl Placement for InProcess {
    fn name(&self) -> &str {
        "in-process"
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'static, Result<Placed>> {
        (request.actor_type.spawn_in_process)(request.args, request.options)
    }
}

/// Runs actors in this process but reaches them only through encoded messages, built
/// from their registered type name and encoded arguments — a remote worker without the
/// process. Every call and reply round-trips through bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loopback;

impl Placement for Loopback {
    fn name(&self) -> &str {
        "loopback"
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'static, Result<Placed>> {
        let encoded = request.encoded_args();
        let type_name = request.actor_type.type_name;
        Box::pin(async move {
            let erased = registry::spawn_by_name(type_name, encoded?, request.options).await?;
            Ok(Placed::elsewhere(erased))
        })
    }
}

/// Registers the placement spawns use when they name none (`inventory::submit!`). The
/// transport registers local processes; without it, the default is [`InProcess`].
pub struct DefaultPlacementRegistration {
    /// Makes the placement.
    pub placement: fn() -> Arc<dyn Placement>,
}

inventory::collect!(DefaultPlacementRegistration);

static DEFAULT_PLACEMENT: LazyLock<RwLock<Arc<dyn Placement>>> = LazyLock::new(|| {
    let registered = inventory::iter::<DefaultPlacementRegistration>
        .into_iter()
        .next();
    RwLock::new(registered.map_or_else(
        || Arc::new(InProcess) as Arc<dyn Placement>,
        |r| (r.placement)(),
    ))
});

/// The placement used by spawns that do not name one (`.on(...)`).
pub fn default_placement() -> Arc<dyn Placement> {
    DEFAULT_PLACEMENT
        .read()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone()
}

/// Sets the placement used by spawns that do not name one.
pub fn set_default_placement(placement: Arc<dyn Placement>) {
    *DEFAULT_PLACEMENT
        .write()
        .unwrap_or_else(|poison| poison.into_inner()) = placement;
}
