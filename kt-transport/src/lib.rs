//! # kt-transport: remote actors over QUIC
//!
//! This crate will carry kt's calls between processes: QUIC endpoints (quinn) with
//! mutual TLS (rustls, a per-session CA made with rcgen), length-delimited MessagePack
//! frames, the worker runtime that serves actors built by type name from kt-core's
//! registry, and the local-process placement — kt's embedded default. It plugs into
//! kt-core through two interfaces: `kt_core::Placement` (spawning) and
//! `kt_core::EncodedRoute` (calls), which kt-core's `Loopback` placement already
//! exercises in-process.
//!
//! It has no public items yet; see the remote-actors issue.
//!
//! ```
//! // The interfaces this crate implements live in kt-core:
//! fn _uses(_: &dyn kt_core::Placement, _: &dyn kt_core::EncodedRoute) {}
//! ```
