//! What a worker inherits from the driver that starts it, beside its actor: values that
//! crates above the transport hand down by name (the data store's directory address is
//! one), so that every process of a session finds the same session-wide services.
//!
//! A crate registers an [`Inheritance`] at link time; the driver asks every registered
//! one for its value when it prepares a worker, and the worker hands each value back to
//! the registration of the same name before it builds its actor.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kt_core::Error;

/// The driver's side of an [`Inheritance`]: the value to hand down, if any.
pub type Provide = fn() -> BoxFuture<'static, Result<Option<Vec<u8>>, Error>>;

/// A value handed down from a driver to the workers it starts, registered with
/// `inventory::submit!`.
pub struct Inheritance {
    /// Its name, unique among registrations.
    pub name: &'static str,
    /// On the driver: the value to hand down, or `None` for nothing.
    pub provide: Provide,
    /// In the worker: takes the value, before the actor is built.
    pub receive: fn(&[u8]) -> Result<(), Error>,
}

inventory::collect!(Inheritance);

/// Every registered value, as the driver hands them down.
pub(crate) async fn inherited() -> Result<Vec<(String, Bytes)>, Error> {
    let mut values = Vec::new();
    for registration in inventory::iter::<Inheritance> {
        if let Some(value) = (registration.provide)().await? {
            values.push((registration.name.to_string(), Bytes::from(value)));
        }
    }
    Ok(values)
}

/// Hands each inherited value to its registration. A value no registration of this
/// binary takes is ignored: the driver was built with a crate the worker lacks, which
/// is fine as long as the worker's actors do not use it.
pub(crate) fn take_inheritance(values: &[(String, Bytes)]) -> Result<(), Error> {
    for (name, value) in values {
        if let Some(registration) = inventory::iter::<Inheritance>
            .into_iter()
            .find(|registration| registration.name == name)
        {
            (registration.receive)(value)?;
        }
    }
    Ok(())
}
