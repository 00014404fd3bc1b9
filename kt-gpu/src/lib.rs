//! # kt-gpu: CUDA devices and NCCL groups for kt actors
//!
//! kt-gpu finds GPUs and joins NCCL groups through [cudarc], with the CUDA driver and NCCL
//! loaded at run time, so kt builds and tests on machines without a GPU, where every
//! entry point returns a typed [`kt_core::Error`] instead of panicking or aborting:
//! [`Error::GpuUnavailable`](kt_core::Error::GpuUnavailable) (no driver, no device, no or too
//! old an NCCL; the reason says what to install or set) or
//! [`Error::GpuFailed`](kt_core::Error::GpuFailed) (a CUDA or NCCL call failed; the
//! library's error name and text).
//!
//! ```
//! match kt_gpu::devices() {
//!     Ok(devices) => println!("{} GPUs, the first: {}", devices.len(), devices[0].name),
//!     Err(kt_core::Error::GpuUnavailable { reason }) => println!("no GPU here: {reason}"),
//!     Err(other) => println!("the CUDA driver failed: {other}"),
//! }
//! // NCCL is independent of a GPU: its version and a group's id need only the library.
//! match kt_gpu::nccl_version() {
//!     Ok(version) => assert!(version >= kt_gpu::MIN_NCCL_VERSION),
//!     Err(error) => println!("{error}"),
//! }
//! ```
//!
//! ## What works where
//!
//! - **Anywhere**: [`libraries`] (finding `libcuda.so.1` and `libnccl.so.2`, preparing a
//!   directory for workers' `LD_LIBRARY_PATH`), the [`Collectives`] trait and its host
//!   implementation over kt calls ([`HostCollectives`], for groups without GPUs and for
//!   CI), and every function's error path.
//! - **Where an NCCL library is installed**, GPU or not: [`nccl_version`],
//!   [`nccl_library_path`], [`UniqueId::new`].
//! - **Where the NVIDIA driver is installed**: [`device_count`], [`devices`] (no device is
//!   `GpuUnavailable`).
//! - **On a GPU only**: [`context`], [`Communicator`] (create, all-reduce, broadcast, abort,
//!   close) and its [`Collectives`] impl. These are tested by `tests/gpu.rs`, which prints
//!   `skipped: <reason>` elsewhere; `gpu-check.sh` runs them on a GPU machine.
//!
//! ## How the libraries are found
//!
//! The CUDA driver is opened by cudarc by name (`libcuda.so`, `libcuda.so.1`), so the
//! dynamic loader's search decides; kt-gpu first asks cudarc whether it can open it at
//! all (`is_culib_present`), and when it cannot, says whether a driver exists somewhere
//! the loader does not look ([`libraries::find_library`]). NCCL is opened by kt-gpu
//! itself, by absolute path: `KT_NCCL_LIBRARY` if set, else the first `libnccl.so.2` (or
//! `libnccl.so`) in `LD_LIBRARY_PATH`, the ldconfig cache, well-known directories and
//! Python wheels (`nvidia/nccl/lib`). Every NCCL function kt-gpu calls is resolved then, so
//! an old NCCL is an error up front, not a panic later. cudarc's own `nccl` module (not
//! used by kt-gpu) finds only `libnccl.so`: give the processes you start
//! [`libraries::nccl_library_dir`] on their `LD_LIBRARY_PATH`.
//!
//! ## Never hangs, never panics
//!
//! A [`Communicator`] is created non-blocking (`ncclCommInitRankConfig`, `blocking = 0`)
//! and every wait — joining, each collective, closing — polls `ncclCommGetAsyncError` (and
//! the GPU's progress) against a deadline; a failure, the deadline or a cancelled wait
//! aborts it (`ncclCommAbort`). cudarc's `Comm`, whose `Drop` panics, is not used. Each
//! cudarc call also runs under `catch_unwind`, turning a panic on a symbol missing from
//! an old driver into `GpuFailed`.

#![warn(missing_docs)]

// `#[kt::actor]` (the hub of host collectives) names `::kt`: here, the core.
extern crate kt_core as kt;

pub use cudarc;

mod collectives;
mod communicator;
mod device;
mod dl;
mod guard;
pub mod host;
pub mod libraries;
mod nccl;
mod nccl_api;
mod nccl_comm;

#[cfg(test)]
mod stub_tests;

pub use collectives::{CollectiveFuture, Collectives};
pub use communicator::{Communicator, NcclElement};
pub use device::{DeviceInfo, context, device_count, devices};
pub use host::{CollectiveHub, HostCollectives};
pub use nccl::{MIN_NCCL_VERSION, NcclVersion, UniqueId, nccl_library_path, nccl_version};
