//! Errors of the secret store. None of them ever carries a secret value.

/// A secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The name breaks the naming rule.
    #[error("invalid secret name: {0}")]
    InvalidName(String),
    /// The value is over [`crate::MAX_SECRET_BYTES`] or not UTF-8.
    #[error("{0}")]
    InvalidValue(String),
    /// The master key file or value is malformed.
    #[error("master key: {0}")]
    Key(String),
    /// A stored secret does not decrypt with this master key.
    #[error(
        "secret `{0}` cannot be decrypted with this master key (was the key replaced or the \
         store copied from another data dir?)"
    )]
    Decrypt(String),
    /// The database failed.
    #[error("secret store: {0}")]
    Store(String),
    /// File I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
