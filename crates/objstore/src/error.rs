//! Errors of the object store, each mapping to one S3 error code.

/// An object-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The bucket name breaks S3's naming rules.
    #[error("invalid bucket name: {1}")]
    InvalidBucketName(String, String),
    /// The key is too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key is empty.
    #[error("a key must be specified")]
    EmptyKey,
    /// No such bucket (for this tenant).
    #[error("bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// The bucket already exists (for this tenant).
    #[error("bucket `{0}` already exists")]
    BucketExists(String),
    /// Deleting a bucket that still holds objects or uploads.
    #[error("bucket `{0}` is not empty")]
    BucketNotEmpty(String),
    /// No such object.
    #[error("no object `{1}` in bucket `{0}`")]
    NoSuchKey(String, String),
    /// The byte range lies outside the object.
    #[error("the range is not satisfiable for an object of {0} bytes")]
    InvalidRange(u64),
    /// No such multipart upload.
    #[error("no multipart upload `{0}`")]
    NoSuchUpload(String),
    /// A part named in a completion does not exist or its ETag differs.
    #[error("{0}")]
    InvalidPart(String),
    /// Parts of a completion are not in ascending order.
    #[error("the parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    /// A part other than the last is smaller than the minimum.
    #[error("part {part} is {size} bytes; every part but the last must be at least {min} bytes")]
    EntityTooSmall {
        /// The part number.
        part: u32,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// A body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A request argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request body ended early or failed (client went away); nothing was stored.
    #[error("the request body failed before it was complete: {0}")]
    IncompleteBody(String),
    /// Stored data does not match its checksum.
    #[error("stored data of `{0}` is corrupt (checksum mismatch)")]
    Corrupt(String),
    /// The metadata database failed.
    #[error("object metadata store: {0}")]
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

impl ObjectError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Store(e.to_string())
}
