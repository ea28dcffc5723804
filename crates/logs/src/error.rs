//! Errors of the logs crate.

/// Reading or writing logs failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log store could not be opened, read or written (for example: the disk is full).
    #[error("log store: {0}")]
    Store(String),
    /// A stored line could not be decoded.
    #[error("log store holds a line it cannot decode: {0}")]
    Corrupt(String),
}

impl LogError {
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::Store(e.to_string())
    }

    pub(crate) fn corrupt(e: impl std::fmt::Display) -> Self {
        Self::Corrupt(e.to_string())
    }
}
