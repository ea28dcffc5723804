//! Errors of the queue service.

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The message body is over the size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The queue holds as many messages as it may; the sender should back off and retry.
    #[error("queue `{queue}` is full ({depth} messages); retry later")]
    Full {
        /// The queue.
        queue: String,
        /// Its depth.
        depth: usize,
    },
    /// The receipt does not name a message this consumer holds: it was acknowledged already,
    /// or its visibility timeout passed and the message went back to the queue.
    #[error(
        "the receipt is no longer valid (acknowledged already, or its visibility timeout passed)"
    )]
    LeaseLost,
    /// A receipt string that this backend did not produce.
    #[error("malformed receipt `{0}`")]
    BadReceipt(String),
    /// The backend failed (I/O, connection, corruption).
    #[error("queue backend: {0}")]
    Backend(String),
}
