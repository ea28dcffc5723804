//! Function logs for Nimbus: every line a guest writes to stdout or stderr, and the platform's
//! own events about an invocation (a trap, a timeout), as a [`LogLine`] tagged with its app,
//! function, invocation and request ids — stored durably with retention by age and size, and
//! fanned out live to followers (`nimbus logs -f`).
//!
//! The engine hands lines to a [`LogSink`] (never blocking the guest); [`Logs`] is the sink
//! that batches them into a [`LogDb`] from its own thread and broadcasts them to subscribers.
//!
//! # Layout
//!
//! - [`line`]: the log line (versioned, typed).
//! - [`store`]: the redb store, queries and retention.
//! - [`logs`]: the sink: bounded channel, writer thread, live broadcast, loss counting.
//! - [`error`]: the crate's error type.

pub mod error;
pub mod line;
pub mod logs;
pub mod store;

pub use error::LogError;
pub use line::{LINE_VERSION, LogLine, Stream};
pub use logs::{LogCounts, Logs, Retention};
pub use store::{LogDb, LogFilter};

/// Where lines go. Implementations must not block: `log` is called from the guest's writes.
pub trait LogSink: Send + Sync {
    /// Takes one line.
    fn log(&self, line: LogLine);
}
