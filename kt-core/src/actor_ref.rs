//! Handles: [`ActorRef<A>`], the typed handle users hold, and [`RawRef<A>`], the route
//! inside it that generated code sends through.
//!
//! `ActorRef<A>` dereferences to the generated handle type of `A` (for `Counter`,
//! `CounterHandle`), which holds one method per public method of the actor. Its own
//! methods (`id`, `name`, `label`, `kill`, `is_alive`) therefore shadow actor methods of
//! the same name, which is why `#[kt::actor]` rejects those names.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{Actor, Handle};
use crate::call::Call;
use crate::cell::LocalCell;
use crate::codec;
use crate::error::{ActorLabel, Error, Result};
use crate::reply::{EncodedReply, Reply};
use crate::route::OwnerGuard;
use crate::route::{EncodedRoute, ErasedActor};

/// How a handle reaches its actor.
enum Route<A: Actor> {
    /// Same process, typed messages: no encoding at all.
    Local(Arc<LocalCell<A>>),
    /// Anywhere, encoded messages: remote workers, and the loopback placement.
    Encoded(Arc<dyn EncodedRoute>),
}

impl<A: Actor> Clone for Route<A> {
    fn clone(&self) -> Self {
        match self {
            Route::Local(cell) => Route::Local(cell.clone()),
            Route::Encoded(route) => Route::Encoded(route.clone()),
        }
    }
}

/// The route to one actor plus, for owning handles, a share of its ownership.
/// Generated handle methods call [`RawRef::call`]; users hold [`ActorRef`] instead.
pub struct RawRef<A: Actor> {
    route: Route<A>,
    owner: Option<Arc<OwnerGuard>>,
}

impl<A: Actor> Clone for RawRef<A> {
    fn clone(&self) -> Self {
        RawRef {
            route: self.route.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<A: Actor> RawRef<A> {
    pub(crate) fn local(cell: Arc<LocalCell<A>>, owner: Option<Arc<OwnerGuard>>) -> Self {
        RawRef {
            route: Route::Local(cell),
            owner,
        }
    }

    pub(crate) fn encoded(erased: ErasedActor) -> Self {
        RawRef {
            route: Route::Encoded(erased.route),
            owner: erased.owner,
        }
    }

    fn dyn_route(&self) -> Arc<dyn EncodedRoute> {
        match &self.route {
            Route::Local(cell) => cell.clone(),
            Route::Encoded(route) => route.clone(),
        }
    }

    /// Sends one call now and returns the future of its reply.
    ///
    /// `build` makes the typed message for an actor in this process; on an encoded
    /// route the arguments are encoded instead and `build` is not used.
    pub fn call<Args, T>(
        &self,
        method: &'static str,
        args: Args,
        build: fn(Args, Reply<T>) -> A::Message,
    ) -> Call<T>
    where
        Args: Serialize,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        match &self.route {
            Route::Local(cell) => {
                let (reply, rx) = Reply::local();
                let accepted = cell.enqueue(build(args, reply));
                Call::local(rx, cell.clone(), accepted)
            }
            Route::Encoded(route) => {
                let what = format_args!("arguments of `{}::{method}`", A::TYPE_NAME);
                // Encoded into this thread's scratch buffer and handed to the route as
                // they are: a remote route copies them straight into its stream.
                let sent =
                    codec::with_encoded(&args, what, |args| route.send_awaited(method, args));
                match sent {
                    Ok((accepted, awaited)) => Call::awaited(awaited, route, method, accepted),
                    Err(error) => Call::failed(error),
                }
            }
        }
    }

    /// Sends one call whose arguments are already encoded (group broadcasts encode
    /// once for all members).
    pub fn call_encoded<T>(&self, method: &'static str, payload: Bytes) -> Call<T> {
        let (reply, rx) = EncodedReply::channel();
        let route = self.dyn_route();
        let accepted = route.send_encoded(method, payload, reply);
        Call::encoded(rx, route, method, accepted)
    }

    /// Which actor this reaches.
    pub fn label(&self) -> &ActorLabel {
        match &self.route {
            Route::Local(cell) => &cell.label,
            Route::Encoded(route) => route.label(),
        }
    }

    /// Stops the actor now (see [`ActorRef::kill`]).
    pub fn kill(&self) {
        match &self.route {
            Route::Local(cell) => cell.kill(),
            Route::Encoded(route) => route.kill(),
        }
    }

    /// False once the actor is known to be gone.
    pub fn is_alive(&self) -> bool {
        match &self.route {
            Route::Local(cell) => cell.is_alive(),
            Route::Encoded(route) => route.is_alive(),
        }
    }

    /// True when this handle keeps the actor alive.
    pub fn is_owning(&self) -> bool {
        self.owner.is_some()
    }

    /// The type-erased form of this handle.
    pub fn erase(&self) -> ErasedActor {
        ErasedActor::new(self.dyn_route(), self.owner.clone())
    }
}

/// A typed handle to an actor, wherever it runs: `Clone + Send + Sync`.
///
/// Calling a method sends the call at once and returns a [`Call`] future of its reply.
/// Calls made through handles of one actor run in the order they were made (rule O1).
/// For an owned actor (the default), the actor stops gracefully when the last handle
/// is dropped (rule L1); for a detached actor only [`ActorRef::kill`] stops it.
pub struct ActorRef<A: Actor> {
    handle: A::Handle,
}

impl<A: Actor> ActorRef<A> {
    /// Wraps a raw reference.
    pub fn from_raw(raw: RawRef<A>) -> Self {
        ActorRef {
            handle: A::Handle::from_raw(raw),
        }
    }

    /// A typed handle from a type-erased one; fails if the actor is of another type.
    pub fn from_erased(erased: ErasedActor) -> Result<Self> {
        let found = erased.label().type_name.as_ref();
        if found != A::TYPE_NAME {
            let label = erased.label();
            return Err(Error::WrongActorType {
                name: label.name.clone().unwrap_or_else(|| label.to_string()),
                expected: A::TYPE_NAME.to_string(),
                found: found.to_string(),
            });
        }
        Ok(ActorRef::from_raw(RawRef::encoded(erased)))
    }

    /// The raw reference inside.
    pub fn raw(&self) -> &RawRef<A> {
        self.handle.raw()
    }

    /// The actor's process-unique id.
    pub fn id(&self) -> u64 {
        self.raw().label().id
    }

    /// The name given at spawn, if any.
    pub fn name(&self) -> Option<&str> {
        self.raw().label().name.as_deref()
    }

    /// The actor's id, type and name, as errors show them.
    pub fn label(&self) -> &ActorLabel {
        self.raw().label()
    }

    /// Stops the actor now, owned or detached: the running method is cancelled at its
    /// next await point, waiting and later calls fail at once with
    /// `Error::ActorDied { cause: Killed }`, and `on_stop` does not run (rule L3).
    pub fn kill(&self) {
        self.raw().kill()
    }

    /// False once the actor is known to be gone.
    pub fn is_alive(&self) -> bool {
        self.raw().is_alive()
    }
}

impl<A: Actor> Deref for ActorRef<A> {
    type Target = A::Handle;

    fn deref(&self) -> &A::Handle {
        &self.handle
    }
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef::from_raw(self.raw().clone())
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorRef({})", self.label())
    }
}
