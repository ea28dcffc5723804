//! Tunables of the gateway.

use std::time::Duration;

/// Limits and timeouts of the HTTP ingress.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Bytes of request line + headers accepted; more is answered 431.
    pub max_header_bytes: usize,
    /// Number of request headers accepted.
    pub max_headers: usize,
    /// After the gateway answers 429 on a connection, its next request waits this long before
    /// it is read (see `pause`; zero: never).
    pub rejection_pause: Duration,
    /// Makes a server span of every request (off by default).
    pub tracer: nimbus_trace::Tracer,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            rejection_pause: Duration::from_millis(10),
            tracer: nimbus_trace::Tracer::off(),
        }
    }
}
