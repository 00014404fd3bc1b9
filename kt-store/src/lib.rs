//! # kt-store: the data store
//!
//! Calls are the wrong pipe for gigabytes. The store moves heavy values between the
//! processes of a kt session — new policy weights from a trainer to every rollout
//! worker, rollouts to trainers, checkpoints to evaluators — by key, with versions:
//!
//! - [`put`] (bytes), [`put_value`] (any serde value) and [`put_tensors`] (named tensors
//!   in the safetensors layout) record the next [`Version`] of a key, with the
//!   producer's metadata ([`Put::meta`]) and a retention ([`Put::keep_last`]);
//! - [`get`], [`get_at`] and [`get_into`] (a preallocated buffer) read one back;
//! - [`wait_newer`] resolves as soon as a newer version is put — pushed by the
//!   directory, never polled;
//! - [`ls`] and [`rm`] list and remove.
//!
//! The bytes stay in the process that put them, in a sealed memfd; every process that
//! got a copy serves it too. A session's directory (an actor in the driver) knows only
//! versions and holders. A getter on the same host maps the holder's memfd read-only (no
//! copy, no `/dev/shm` file); one on another host pulls it over a QUIC bulk stream,
//! verified chunk by chunk. A holder that is gone is skipped (and forgotten); when no
//! holder is left, the get fails with `Error::HolderLost` at once.
//!
//! Each process keeps to a memory budget (evicting cached copies, then spilling its own
//! values to disk, then failing a put with `Error::StoreFull`; see [`usage`]), and
//! [`sessions::on_this_machine`] lists the stores of this machine's drivers (`kt store ls`).
//!
//! The same functions work in the driver and inside actors, on every backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kt_core::Error> {
//! use kt_store::{Version, put, wait_newer, get};
//!
//! let first = put("policy/weights", vec![1u8, 2, 3]).meta("step", 1).keep_last(2).await?;
//! assert_eq!(first, Version(1));
//! let newest = wait_newer("policy/weights", Version::NONE).await?; // already there
//! assert_eq!((newest.version(), newest.info().meta("step")), (Version(1), Some("1")));
//! assert_eq!(&get("policy/weights").await?.bytes()[..], &[1, 2, 3]);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

// The actor macro names kt's paths as `::kt::...`; inside this crate they are kt-core's.
extern crate kt_core as kt;

mod api;
mod budget;
mod client;
mod directory;
mod holder;
mod holdings;
mod ranges;
mod relay;
mod same_host;
mod session;
pub mod sessions;
mod spill;
mod tensors;
mod traffic;
mod version;

pub use api::{
    Entry, Put, WaitNewer, get, get_at, get_into, ls, put, put_tensors, put_value, rm, usage,
    wait_newer,
};
pub use budget::{DISK_ENV, FULL_WAIT_ENV, MEMORY_ENV, SPILL_DIR_ENV};
pub use directory::{FANOUT_ENV, KeyListing, Transfer, VersionListing, Versions};
pub use holder::{HolderAddress, SAME_HOST_ENV};
pub use holdings::Usage;
pub use tensors::{Dtype, SafeTensors, TensorSet};
pub use traffic::{Traffic, traffic, traffic_of};
pub use version::{MAX_KEY_BYTES, ValueKind, Version, VersionInfo};
