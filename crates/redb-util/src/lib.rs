//! What Nimbus's append-only embedded stores (usage records, function logs) share: a
//! [`Batcher`] that takes items from hot paths without ever blocking them and writes them in
//! batches from its own thread, and a redb handle ([`Reopening`]) that recovers from I/O
//! errors (a full disk) by reopening the file.
//!
//! - [`batch`]: the bounded queue, the writer thread, retention and loss accounting.
//! - [`reopen`]: the redb handle reopened after a failed write.

pub mod batch;
pub mod reopen;

pub use batch::{BatchConfig, BatchCounts, BatchStore, Batcher};
pub use reopen::{OpenFn, Reopening};
