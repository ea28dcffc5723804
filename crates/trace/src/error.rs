//! The crate's error type.

/// What can go wrong setting up or shutting down tracing.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter's configuration is not usable (a bad endpoint, header or ratio).
    #[error("invalid tracing configuration: {0}")]
    Config(String),
    /// Spans could not be flushed at shutdown.
    #[error("flushing traces failed: {0}")]
    Flush(String),
}
