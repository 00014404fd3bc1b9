//! # kt-gpu: GPU buffers and NCCL groups
//!
//! This crate will move tensors between actors GPU to GPU: device buffers and NCCL
//! communicators through cudarc, loaded dynamically so that kt builds and tests on
//! machines without a GPU, where every GPU entry point returns a typed error instead.
//!
//! It has no public items yet; see the data-store issue.
//!
//! ```
//! // GPU actors ask for devices through kt-core's Compute:
//! assert_eq!(kt_core::Compute::new().gpus(2).gpus, 2);
//! ```
