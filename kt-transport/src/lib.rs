//! # kt-transport: remote actors over QUIC
//!
//! Calls between processes travel over QUIC (quinn) with mutual TLS (rustls; certificates
//! from this user's machine CA, made with rcgen and kept in the state
//! [`directory`](wire::directory)), as length-delimited [`frame`](wire::frame)s. Each
//! process has one [`Node`]: an endpoint that serves the actors it exports and holds its
//! connections to other nodes. Handles that travel in messages resolve to routes on the
//! receiving node, so actors call each other directly.
//!
//! The crate is in four layers, each a folder, each building only on the ones before it:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`wire`] | frames, TLS, the QUIC config, the stream socket, the state directory |
//! | [`node`] | the node, peers, routes, serving, worker control, the port-forward path |
//! | [`worker`] | worker mode, dialed workers, supervision of worker processes (rule S3) |
//! | [`local`] | the local-process placement and this machine's resources |
//!
//! `tests/layers.rs` fails when a module reaches up a layer.
//!
//! It plugs into kt-core through `kt_core::backend::EncodedRoute` (calls) and
//! `kt_core::handle_wire::HandleTransport` (handles in messages), which it registers at
//! link time.
//!
//! ```
//! use kt_transport::wire::tls::ClusterCa;
//!
//! // Every process of a session gets an identity signed by the session's CA.
//! let ca = ClusterCa::generate().expect("a CA");
//! let identity = ca.issue("worker").expect("a leaf");
//! assert!(identity.client_config().is_ok() && identity.server_config().is_ok());
//! ```

#![warn(missing_docs)]

pub mod local;
pub mod node;
pub mod wire;
pub mod worker;

pub use local::LocalProcess;
pub use node::{NODE_IP_ENV, Node, RemoteRoute, use_address, use_ca, use_runtime};
pub use wire::TransportError;
pub use worker::{is_worker, serve_if_worker, set_worker_args, worker_command};
