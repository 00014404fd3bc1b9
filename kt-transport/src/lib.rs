//! # kt-transport: remote actors over QUIC
//!
//! Calls between processes travel over QUIC (quinn) with mutual TLS (rustls; certificates
//! from this user's machine CA, made with rcgen and kept in the [`directory`]), as
//! length-delimited MessagePack [`frame`]s. Each process has
//! one [`Node`]: a loopback endpoint that serves the actors it exports and holds its
//! connections to other nodes. Handles that travel in messages resolve to routes on the
//! receiving node, so actors call each other directly.
//!
//! It plugs into kt-core through `kt_core::EncodedRoute` (calls) and
//! `kt_core::handle_wire::HandleTransport` (handles in messages), which it registers at
//! link time.
//!
//! ```
//! use kt_transport::tls::ClusterCa;
//!
//! // Every process of a session gets an identity signed by the session's CA.
//! let ca = ClusterCa::generate().expect("a CA");
//! let identity = ca.issue("worker").expect("a leaf");
//! assert!(identity.client_config().is_ok() && identity.server_config().is_ok());
//! ```

#![warn(missing_docs)]

pub mod dialed;
pub mod directory;
mod endpoint;
pub mod frame;
mod handles;
mod local;
pub mod resources;
mod restart;
mod route;
mod serve;
pub mod stream_socket;
pub mod tls;
pub mod worker;

pub use endpoint::{Node, use_ca, use_runtime};
pub use local::{LocalProcess, set_worker_args, worker_command};
pub use route::RemoteRoute;
pub use worker::{is_worker, serve_if_worker};

/// A failure of the transport layer itself (before any call is involved).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Certificates or TLS configuration could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A socket could not be opened.
    #[error("network setup failed: {0}")]
    Io(String),
}

impl From<TransportError> for kt_core::Error {
    fn from(error: TransportError) -> Self {
        kt_core::Error::Unavailable {
            target: "this process's QUIC endpoint".into(),
            message: error.to_string(),
        }
    }
}
