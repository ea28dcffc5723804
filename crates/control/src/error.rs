//! Errors of the control plane. Each knows its HTTP status and a stable code.

use http::StatusCode;

/// A control-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The manifest is invalid (the message names file, line and field).
    #[error("{0}")]
    InvalidManifest(String),
    /// The request is malformed or inconsistent.
    #[error("{0}")]
    BadRequest(String),
    /// A component could not be loaded or does not fit the host.
    #[error("function `{function}`: {message}")]
    InvalidComponent {
        /// The function whose component failed.
        function: String,
        /// What was wrong.
        message: String,
    },
    /// A route is taken by another function.
    #[error("{0}")]
    RouteConflict(String),
    /// The named app, version or blob does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong credentials.
    #[error("missing or invalid API token")]
    Unauthorized,
    /// An upload exceeded the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// A queue is full: the sender should back off and retry (429 with `Retry-After`).
    #[error("{0}")]
    Busy(String),
    /// A backing service (key-value backend, …) failed or is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Disk I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ControlError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidManifest(_) | Self::BadRequest(_) | Self::InvalidComponent { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::RouteConflict(_) => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(_) | Self::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidManifest(_) => "invalid_manifest",
            Self::BadRequest(_) => "bad_request",
            Self::InvalidComponent { .. } => "invalid_component",
            Self::RouteConflict(_) => "route_conflict",
            Self::NotFound(_) => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge(_) => "too_large",
            Self::Busy(_) => "busy",
            Self::Store(_) => "store_error",
            Self::Io { .. } => "io_error",
            Self::Unavailable(_) => "unavailable",
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

impl From<nimbus_kv::KvError> for ControlError {
    fn from(e: nimbus_kv::KvError) -> Self {
        use nimbus_kv::KvError;
        match e {
            KvError::ValueTooLarge { .. } => Self::TooLarge(e.to_string()),
            KvError::Backend(message) => {
                tracing::warn!(error = %message, "key-value backend error");
                Self::Unavailable(format!("key-value backend: {message}"))
            }
            KvError::InvalidKey(_)
            | KvError::NotACounter(_)
            | KvError::Overflow(_)
            | KvError::InvalidCursor => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<nimbus_queue::QueueError> for ControlError {
    fn from(e: nimbus_queue::QueueError) -> Self {
        use nimbus_queue::QueueError;
        match e {
            QueueError::MessageTooLarge { .. } => Self::TooLarge(e.to_string()),
            QueueError::Full { .. } => Self::Busy(e.to_string()),
            QueueError::LeaseLost | QueueError::BadReceipt(_) => Self::BadRequest(e.to_string()),
            QueueError::Backend(message) => {
                tracing::error!(error = %message, "queue backend failed");
                Self::Unavailable(format!("queue backend: {message}"))
            }
        }
    }
}

impl From<redb::Error> for ControlError {
    fn from(e: redb::Error) -> Self {
        Self::Store(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ControlError {
            fn from(e: $t) -> Self {
                Self::Store(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
