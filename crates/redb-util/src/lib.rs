//! What Nimbus's embedded stores share. Every store opens its redb file with a bounded cache
//! ([`cache`]). The append-only ones (usage records, function logs) also use a [`Batcher`]
//! that takes items from hot paths without ever blocking them and writes them in batches from
//! its own thread, and a redb handle ([`Reopening`]) that recovers from I/O errors (a full
//! disk) by reopening the file.
//!
//! - [`cache`]: how much memory each store's cache may hold, and opening a file with it.
//! - [`batch`]: the bounded queue, the writer thread, retention and loss accounting.
//! - [`reopen`]: the redb handle reopened after a failed write.

pub mod batch;
pub mod cache;
pub mod reopen;

pub use batch::{BatchConfig, BatchCounts, BatchStore, Batcher};
pub use cache::create;
pub use reopen::{OpenFn, Reopening};
