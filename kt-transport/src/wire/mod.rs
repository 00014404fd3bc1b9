//! The wire layer: what travels between processes and how it is protected.
//!
//! Nothing here knows about nodes, workers or placements; the layers above
//! (node, worker, local) build on it.
//!
//! | module | job |
//! |---|---|
//! | [`budget`] | what one connection's unfinished frames may hold |
//! | [`frame`] | the frames that open streams and run control streams, length-delimited |
//! | [`call`] | the binary frames of a call stream: calls in, replies out |
//! | [`tls`] | certificates (a CA per cluster, a leaf per process) and rustls/quinn configs |
//! | [`quic`] | the QUIC transport settings every connection shares |
//! | [`stream_socket`] | QUIC datagrams carried over byte streams (port-forwards) |
//! | [`directory`] | this user's machine-wide state directory: names, the machine CA, logs |
//! | [`sealed_memory`] | immutable bytes in a sealed memfd, mapped read-only, for same-host sharing |
//! | [`fd_passing`] | file descriptors between same-user processes over an abstract Unix socket |
//! | [`host`] | which processes share a host (and can pass each other descriptors) |
//! | [`blob`] | `Blob`: bytes for arguments and replies, handed over as shared memory on one host |

pub mod blob;
pub mod budget;
pub mod call;
pub mod directory;
mod error;
pub mod fd_passing;
pub mod frame;
pub mod host;
pub mod quic;
pub mod sealed_memory;
pub mod stream_socket;
pub mod tls;

pub use error::TransportError;
