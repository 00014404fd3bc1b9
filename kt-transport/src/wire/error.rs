//! [`TransportError`]: a failure of the transport itself, before any call is involved.

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
