//! Handles that travel: how an [`ActorRef`] is written into a message and read back in
//! another process.
//!
//! A handle travels as a [`HandleAddress`]: the node (the process endpoint) that serves
//! the actor and the actor's label. The receiving process connects to that node
//! directly, so an actor that receives a handle calls the target peer to peer, never
//! through whoever sent the handle. Turning a handle into an address and back is the
//! job of a [`HandleTransport`], which the transport crate registers at link time;
//! kt-core only defines the format.
//!
//! A handle that arrives from another process does not own the actor: the actor's
//! lifetime stays with the handles of the process that spawned it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::error::{Error, Result};
use crate::route::ErasedActor;
pub use crate::route::HandleAddress;

/// Turns handles into addresses and back; implemented by the transport.
pub trait HandleTransport: Send + Sync + 'static {
    /// Makes an actor of this process reachable from others and returns its address.
    fn export(&self, actor: &ErasedActor) -> Result<HandleAddress>;
    /// A (non-owning) handle to the actor at `address`.
    fn import(&self, address: HandleAddress) -> Result<ErasedActor>;
}

/// Registers a [`HandleTransport`] at link time (`inventory::submit!`).
pub struct TransportRegistration {
    /// Returns the process-wide transport.
    pub transport: fn() -> &'static dyn HandleTransport,
}

inventory::collect!(TransportRegistration);

fn transport() -> Result<&'static dyn HandleTransport> {
    inventory::iter::<TransportRegistration>
        .into_iter()
        .next()
        .map(|registration| (registration.transport)())
        .ok_or_else(|| Error::Encode {
            what: "an actor handle".into(),
            message:
                "no transport is linked into this binary, so handles cannot leave the process; \
                      depend on the `kt` crate (which links kt-transport)"
                    .into(),
        })
}

/// The address of the actor behind `actor`, exporting it if it lives in this process.
pub fn address_of(actor: &ErasedActor) -> Result<HandleAddress> {
    match actor.route().address() {
        Some(address) => Ok(address),
        None => transport()?.export(actor),
    }
}

/// A handle to the actor at `address`.
pub fn resolve(address: HandleAddress) -> Result<ErasedActor> {
    transport()?.import(address)
}

impl<A: Actor> Serialize for ActorRef<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let address = address_of(&self.raw().erase()).map_err(serde::ser::Error::custom)?;
        address.serialize(serializer)
    }
}

impl<'de, A: Actor> Deserialize<'de> for ActorRef<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let address = HandleAddress::deserialize(deserializer)?;
        let erased = resolve(address).map_err(serde::de::Error::custom)?;
        ActorRef::from_erased(erased).map_err(serde::de::Error::custom)
    }
}
