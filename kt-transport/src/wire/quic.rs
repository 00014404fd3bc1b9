//! The QUIC settings every connection of kt shares.

use std::sync::Arc;
use std::time::Duration;

/// QUIC settings shared by every connection: room for large replies, and keep-alives so
/// that a silent peer is noticed.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    Arc::new(base_transport_config())
}

/// The settings of [`transport_config`], still open to changes: the stream path
/// ([`super::stream_socket`]) adds its own MTU on top.
pub fn base_transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(4096));
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(4096));
    config.stream_receive_window(quinn::VarInt::from_u32(32 << 20));
    config.receive_window(quinn::VarInt::from_u32(256 << 20));
    config.send_window(256 << 20);
    config.keep_alive_interval(Some(Duration::from_secs(2)));
    config.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        10_000,
    ))));
    config
}
