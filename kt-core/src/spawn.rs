//! [`Spawn<A>`]: the builder `#[kt::actor]` returns from `Actor::spawn(args...)`.
//! Set options on it, then `.await` it for the handle.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::error::{Error, Result};
use crate::options::{SpawnOptions, spawn_option_setters};
use crate::placement::{Placement, SpawnArgs, SpawnRequest, default_placement};
use crate::registry::ActorType;

/// A spawn being prepared: `.await` it to start the actor and get its handle.
#[must_use = "a Spawn does nothing until it is awaited"]
pub struct Spawn<A: Actor> {
    args: A::Args,
    options: SpawnOptions,
    placement: Option<Arc<dyn Placement>>,
}

impl<A: Actor> Spawn<A> {
    /// A spawn of `A` with the constructor arguments `args` and default options.
    pub fn new(args: A::Args) -> Self {
        Spawn {
            args,
            options: SpawnOptions::default(),
            placement: None,
        }
    }

    spawn_option_setters!();
}

impl<A: Actor> IntoFuture for Spawn<A> {
    type Output = Result<ActorRef<A>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<ActorRef<A>>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.options.validate()?;
            let placement = self.placement.unwrap_or_else(default_placement);
            let request = SpawnRequest {
                actor_type: ActorType::of::<A>(),
                args: SpawnArgs::Typed(Box::new(self.args)),
                options: self.options,
            };
            placement.spawn(request).await?.into_ref::<A>()
        })
    }
}

/// Finds the live actor named `name`, as a handle of type `A`.
///
/// Fails with [`Error::ActorNotFound`] when no live actor has that name, and with
/// [`Error::WrongActorType`] when the actor of that name is not an `A`. The handle is an
/// owning one for owned actors (it keeps the actor alive like any other handle).
pub async fn get_actor<A: Actor>(name: &str) -> Result<ActorRef<A>> {
    if let Some(found) = crate::names::lookup_local::<A>(name) {
        return found;
    }
    match default_placement().lookup(name).await? {
        Some(placed) => placed.into_ref::<A>().map_err(|error| match error {
            Error::WrongActorType {
                expected, found, ..
            } => Error::WrongActorType {
                name: name.to_string(),
                expected,
                found,
            },
            other => other,
        }),
        None => Err(Error::ActorNotFound {
            name: name.to_string(),
        }),
    }
}
