//! Durable queues: what queue triggers consume, and what users and functions send to.
//!
//! # Layout
//!
//! - [`QueueBackend`] (this file): the operations every backend implements — send (optionally
//!   delayed), receive with a visibility timeout (a *lease*), acknowledge, retry later,
//!   dead-letter, peek, stats and redrive.
//! - [`embedded`]: the default, durable backend on redb under the data dir.
//! - [`nats`]: the same on NATS JetStream (a work-queue stream, a pull consumer per queue).
//! - [`conformance`]: the one suite every backend must pass (`tests/conformance.rs`).
//! - [`error`]: the error type, [`QueueError`].
//!
//! # Semantics (the conformance suite checks them)
//!
//! - **At-least-once.** A received message is leased for its visibility timeout; it is gone only
//!   once acknowledged. If the lease runs out first (the consumer died or hung), the message is
//!   delivered again. A consumer must therefore tolerate duplicates.
//! - **Attempts** count deliveries: the first delivery is attempt 1. Retrying a message
//!   ([`QueueBackend::retry`]) makes it visible again after a delay, as Lambda's and SQS's retries
//!   do; moving it to a dead-letter queue ([`QueueBackend::dead_letter`]) keeps its history
//!   (attempts, last error, source queue). Redriving resets attempts.
//! - **Order.** Messages become visible in send order and are handed out oldest-visible first;
//!   retries and delays reorder (a retried message goes behind the ones sent meanwhile), and
//!   concurrent consumers finish in any order. There is no FIFO guarantee.
//! - **Backpressure.** A queue holds at most its capacity ([`NewMessage::capacity`], at most
//!   [`MAX_DEPTH`]); past that `send` fails with [`QueueError::Full`] instead of growing memory
//!   or disk without bound.

pub mod conformance;
pub mod embedded;
pub mod error;
pub mod nats;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use error::QueueError;

/// Largest message body accepted by any backend (the manifest may set a lower limit per queue).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most messages one queue holds (ready, delayed and in flight together).
pub const MAX_DEPTH: usize = 100_000;
/// Longest delay or visibility timeout accepted (12 hours, as SQS allows).
pub const MAX_DELAY: Duration = Duration::from_secs(12 * 3600);

/// Which queue: queues belong to an app. Names are validated by `nimbus_manifest` before they
/// get here and cannot contain `/`, so [`QueueId::key`]s of different queues never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId {
    /// Tenant (`default` until multi-tenancy).
    pub tenant: String,
    /// The app that declares the queue.
    pub app: String,
    /// The queue's name.
    pub queue: String,
}

impl QueueId {
    /// A queue id.
    pub fn new(tenant: &str, app: &str, queue: &str) -> Self {
        Self {
            tenant: tenant.into(),
            app: app.into(),
            queue: queue.into(),
        }
    }

    /// `tenant/app/queue`: how backends name the queue.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.app, self.queue)
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.queue)
    }
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    /// The payload.
    pub body: Bytes,
    /// Attributes carried with the body (content type, CloudEvents attributes, ...).
    pub attributes: Vec<(String, String)>,
    /// Not delivered before this much time has passed (at most [`MAX_DELAY`]).
    pub delay: Duration,
    /// Refuse the send if the queue already holds this many messages (the queue's declared
    /// `max_messages`); `None` and anything above [`MAX_DEPTH`] mean [`MAX_DEPTH`].
    pub capacity: Option<usize>,
}

/// A stored message, as peeked or delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id (UUIDv7), assigned at send.
    pub id: String,
    /// The payload.
    #[serde(skip)]
    pub body: Bytes,
    /// Attributes given at send.
    pub attributes: Vec<(String, String)>,
    /// When it was sent, Unix milliseconds.
    pub sent_at_ms: u64,
    /// Deliveries so far; in a [`Delivery`], the number of this one (1 = first).
    pub attempts: u32,
    /// The error of the last failed attempt, if any.
    pub last_error: Option<String>,
    /// The queue it was dead-lettered from, if it was.
    pub dead_lettered_from: Option<String>,
}

/// Proof of a lease: pass it back to acknowledge, retry or dead-letter the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// One leased message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message; `attempts` is the number of this delivery.
    pub message: Message,
    /// The lease.
    pub receipt: Receipt,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Visible now.
    pub ready: u64,
    /// Waiting for a delay or retry backoff to pass.
    pub delayed: u64,
    /// Leased to a consumer.
    pub in_flight: u64,
}

impl QueueStats {
    /// All messages of the queue.
    pub fn total(&self) -> u64 {
        self.ready + self.delayed + self.in_flight
    }
}

/// A queue backend.
#[async_trait]
pub trait QueueBackend: Send + Sync {
    /// Largest message body this backend carries (at most [`MAX_MESSAGE_BYTES`]; a NATS server
    /// allows its `max_payload` less room for headers).
    fn max_message_bytes(&self) -> usize {
        MAX_MESSAGE_BYTES
    }

    /// Stores a message durably and returns its id. Fails with [`QueueError::Full`] when the
    /// queue is at the message's capacity.
    async fn send(&self, queue: &QueueId, message: NewMessage) -> Result<String, QueueError>;

    /// Leases up to `max` visible messages for `visibility`, waiting up to `wait` for one to
    /// become visible (long polling). Returns an empty list if none did.
    async fn receive(
        &self,
        queue: &QueueId,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes a leased message: it was handled.
    async fn ack(&self, queue: &QueueId, receipt: &Receipt) -> Result<(), QueueError>;

    /// Ends a lease without deleting: the message becomes visible again after `delay`, with
    /// `error` recorded as its last error.
    async fn retry(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError>;

    /// Moves a leased message to `dead_letter_queue`, recording `error` and where it came from.
    async fn dead_letter(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        dead_letter_queue: &QueueId,
        error: &str,
    ) -> Result<(), QueueError>;

    /// Up to `limit` messages that are not in flight, oldest-visible first, without leasing them.
    async fn peek(&self, queue: &QueueId, limit: usize) -> Result<Vec<Message>, QueueError>;

    /// Counts of the queue's messages by state.
    async fn stats(&self, queue: &QueueId) -> Result<QueueStats, QueueError>;

    /// Moves up to `limit` messages that are not in flight from `from` (a dead-letter queue) to
    /// `to`, visible at once with attempts reset. Returns how many moved.
    async fn redrive(&self, from: &QueueId, to: &QueueId, limit: usize) -> Result<u64, QueueError>;
}

/// Checks a message against a backend's size limit.
pub fn check(message: &NewMessage, limit: usize) -> Result<(), QueueError> {
    if message.body.len() > limit {
        return Err(QueueError::MessageTooLarge {
            size: message.body.len(),
            limit,
        });
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
