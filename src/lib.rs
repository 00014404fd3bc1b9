//! # kt: Kubernetes-native actors for Rust
//!
//! Annotate a struct and its impl block with `#[kt::actor]` and you get a typed handle
//! whose method calls run on that actor wherever it lives: in this process (unit
//! tests), in a local child process, or in a Kubernetes pod. The semantics are the same
//! everywhere and are written down, rule by rule, in [`semantics`].
//!
//! ```
//! use kt::prelude::*;
//!
//! #[kt::actor]
//! pub struct Counter {
//!     value: u64,
//! }
//!
//! #[kt::actor]
//! impl Counter {
//!     pub fn new(start: u64) -> Self {
//!         Counter { value: start }
//!     }
//!
//!     pub fn increment(&mut self) -> u64 {
//!         self.value += 1;
//!         self.value
//!     }
//!
//!     /// A method's own error travels back to the caller as a value.
//!     pub fn checked_add(&mut self, n: u64) -> Result<u64, String> {
//!         self.value = self.value.checked_add(n).ok_or_else(|| format!("{} + {n} overflows", self.value))?;
//!         Ok(self.value)
//!     }
//! }
//!
//! #[kt::main]
//! async fn main() -> kt::Result<()> {
//!     let counter = Counter::spawn(0).await?;
//!     let a = counter.increment(); // sent now; `a` is the future of the reply
//!     let b = counter.increment();
//!     assert_eq!((a.await?, b.await?), (1, 2)); // calls run in the order they were made
//!     assert_eq!(counter.checked_add(u64::MAX).await?, Err("2 + 18446744073709551615 overflows".to_string()));
//!     Ok(())
//! }
//! ```
//!
//! Where to go next: [`ActorRef`] (handles), [`Call`] (replies), [`Context`] (inside an
//! actor), [`Error`] (what can go wrong), [`ActorGroup`] (ranked groups),
//! [`Placement`] (where actors run), and the `actor` macro's docs for what it generates.

#![warn(missing_docs)]

pub use kt_core::*;
pub use kt_macros::{actor, main};

/// Everything most programs need: `use kt::prelude::*;`.
pub mod prelude {
    pub use kt_core::{
        ActorGroup, ActorRef, Call, Compute, Context, DeathCause, Error, GroupCall, GroupMember,
        Lifetime, SpawnOptions, get_actor,
    };
}
