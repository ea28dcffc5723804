//! Usage metering for Nimbus: every invocation leaves a [`UsageRecord`] — who ran, for how long,
//! with how much memory, CPU and bytes, and how it ended — and usage is billed from those
//! records as Lambda bills (1 ms granularity, GB-seconds of configured memory, per request).
//!
//! The engine builds a record when an invocation ends and hands it to a [`UsageSink`]; the
//! [`Meter`] is the sink that batches records into a [`RecordStore`] from its own thread, so
//! metering never blocks or fails an invocation. [`UsageDb`] is the embedded store; reports
//! ([`UsageReport`]) are built from its hourly rollups.
//!
//! # Layout
//!
//! - [`record`]: the versioned usage record, trigger kinds and outcomes; `id`: the ids it
//!   carries inline ([`RecordId`]).
//! - [`meter`]: the non-blocking sink and its batching writer thread (durability window, loss
//!   accounting).
//! - [`carry`]: usage summed per hour and function without records of its own (provisioned
//!   time, invocations whose records were lost), so the bill survives a stalled or full disk.
//! - [`provisioned`]: the time instances were kept ready (`min_instances`), split by hour.
//! - [`metrics`]: Prometheus series (from records, operation counters, a scrape snapshot).
//! - [`store`]: the `RecordStore` trait and the redb store (raw records + hourly rollups).
//! - `encoding`: how a stored batch is encoded (postcard behind a format byte; JSON read).
//! - [`rollup`]: counters, grouping and reports (pure).
//! - [`price`]: the price table, GB-seconds and the free tier (pure).
//! - [`export`]: time ranges as users write them (`24h`), and CSV.
//! - [`error`]: the crate's error type.

pub mod carry;
mod encoding;
pub mod error;
pub mod export;
mod id;
pub mod meter;
pub mod metrics;
pub mod price;
pub mod provisioned;
pub mod record;
pub mod rollup;
pub mod store;

pub use carry::HourlySums;
pub use error::MeteringError;
pub use meter::{Meter, MeterCounts};
pub use metrics::Metrics;
pub use price::PriceTable;
pub use provisioned::ProvisionedUsage;
pub use record::{Outcome, RECORD_VERSION, RecordId, TriggerKind, UsageRecord};
pub use rollup::{Counters, GroupBy, Rollup, UsageReport, UsageRow};
pub use store::{Filter, RecordStore, UsageDb};

/// Where finished invocations' records go. Implementations must not block: `record` is
/// called on the invocation's task as it ends.
pub trait UsageSink: Send + Sync {
    /// Takes one record.
    fn record(&self, record: UsageRecord);

    /// Takes a span of time instances were kept ready (`min_instances`). Called about once a
    /// minute per provisioned function version, and when one goes away.
    fn provisioned(&self, usage: ProvisionedUsage);
}
