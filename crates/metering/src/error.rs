//! Errors of the metering crate.

use std::path::{Path, PathBuf};

/// Reading or writing usage failed.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    /// The usage store could not be opened.
    #[error("cannot open the usage store at {path}: {message}")]
    Open {
        /// The store's file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A read or write of the usage store failed (for example: the disk is full).
    #[error("usage store: {0}")]
    Store(String),
    /// A stored row could not be decoded.
    #[error("usage store holds a row it cannot decode: {0}")]
    Corrupt(String),
}

impl MeteringError {
    pub(crate) fn open(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Open {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }

    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::Store(e.to_string())
    }

    pub(crate) fn corrupt(e: impl std::fmt::Display) -> Self {
        Self::Corrupt(e.to_string())
    }
}
