//! Errors of the key-value service.

/// A key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The value is over the size limit.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        /// Size of the value.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `increment` on a value that is not a decimal integer.
    #[error("the value of key `{0}` is not a counter (a decimal integer)")]
    NotACounter(String),
    /// The increment would overflow an i64.
    #[error("counter `{0}` would overflow")]
    Overflow(String),
    /// The cursor was not produced by this backend.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The backend failed (I/O, connection, corruption).
    #[error("key-value backend: {0}")]
    Backend(String),
}
