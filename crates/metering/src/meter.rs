//! The meter: takes usage records from invocations without ever blocking them, and writes
//! them to the store in batches from one thread (a [`nimbus_redb::Batcher`]).
//!
//! ```text
//! invocation ends ─► Meter::record ─► bounded queue (65,536) ─► writer thread
//!                      (never waits; a full         every FLUSH_INTERVAL: metrics, then
//!                       queue counts as lost)       one transaction (records + rollups)
//! ```
//!
//! **Durability window.** A record is durable once its batch commits: at most
//! [`FLUSH_INTERVAL`] plus one commit (an fsync) after the invocation ends. A kill -9 loses at
//! most the records of that window; everything committed before survives (redb commits are
//! atomic), which `crates/cli/tests/all/usage.rs` checks by killing the real binary.
//!
//! **A failing store** (a full disk) never stops invocations: the batch is dropped, its records
//! are counted in [`MeterCounts::lost`], an error is logged (at most once a minute), and the
//! next batch tries again.
//!
//! **Provisioned time** ([`ProvisionedUsage`], a span a minute per provisioned function) rides
//! along: each batch takes the spans reported since the last one, and a failed batch keeps
//! them for the next (they are what idle provisioned instances are billed by; at most
//! [`MAX_PENDING_SPANS`] wait, the oldest dropped past that).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nimbus_redb::{BatchConfig, BatchStore, Batcher};

use crate::UsageSink;
use crate::provisioned::ProvisionedUsage;
use crate::record::UsageRecord;
use crate::store::RecordStore;

/// How long records gather before a batch is written: the kill -9 window. Each batch costs a
/// commit and an fsync whatever its size: at 50 ms the fsyncs alone were ~0.9% of the
/// process's CPU under load, a quarter of what metering cost (BENCHMARKS.md, metering
/// overhead).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Records waiting for the writer at most, over all shards; past this they are counted as
/// lost.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// Queues the workers push records into: two per core, so that each worker thread of the
/// runtime has one of its own (records are keyed by start time, not by arrival, so the order
/// between shards does not matter). One shard holds `CHANNEL_CAPACITY / shards()`: 16,384 on
/// two cores, 80,000 records a second from one thread at the 200 ms flush.
fn shards() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .min(64)
}
/// How often old raw records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Provisioned spans waiting for the writer at most (a full disk for a week, with 100
/// provisioned functions).
pub const MAX_PENDING_SPANS: usize = 1_000_000;

/// What happened to records so far: accepted, written, lost (the queue was full, or their
/// batch could not be written) and failed batches.
pub type MeterCounts = nimbus_redb::BatchCounts;

/// The meter: a [`UsageSink`] writing through a [`RecordStore`].
pub struct Meter {
    batcher: Batcher<UsageRecord>,
    spans: Arc<Mutex<Vec<ProvisionedUsage>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer's side: counts each batch into the metrics, then stores it with the provisioned
/// spans reported since the last one.
struct Writing<S> {
    store: S,
    metrics: Option<Arc<crate::Metrics>>,
    retention: Duration,
    spans: Arc<Mutex<Vec<ProvisionedUsage>>>,
}

impl<S: RecordStore> BatchStore<UsageRecord> for Writing<S> {
    type Error = crate::MeteringError;

    fn append(&mut self, batch: &[UsageRecord]) -> Result<(), Self::Error> {
        if let Some(metrics) = &self.metrics {
            metrics.observe(batch);
        }
        let spans = std::mem::take(&mut *lock(&self.spans));
        match self.store.append(batch, &spans) {
            Ok(()) => {
                if let Some(metrics) = &self.metrics {
                    metrics.observe_provisioned(&spans);
                }
                Ok(())
            }
            Err(e) => {
                // Kept for the next batch, before any reported since.
                let mut pending = lock(&self.spans);
                pending.splice(0..0, spans);
                let excess = pending.len().saturating_sub(MAX_PENDING_SPANS);
                if excess > 0 {
                    pending.drain(..excess);
                    tracing::error!(
                        dropped = excess,
                        "provisioned usage spans dropped: the usage store has failed for too long"
                    );
                }
                Err(e)
            }
        }
    }

    fn pending(&self) -> bool {
        !lock(&self.spans).is_empty()
    }

    fn prune(&mut self, now_ms: u64) -> Result<u64, Self::Error> {
        self.store
            .prune(now_ms.saturating_sub(self.retention.as_millis() as u64))
    }
}

impl Meter {
    /// Starts the writer thread over `store`, pruning records older than `retention`, and
    /// counting every batch into `metrics` (if any) as it passes.
    pub fn start(
        store: impl RecordStore,
        retention: Duration,
        metrics: Option<Arc<crate::Metrics>>,
    ) -> Result<Self, crate::MeteringError> {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let writing = Writing {
            store,
            metrics,
            retention,
            spans: spans.clone(),
        };
        let config = BatchConfig {
            thread: "nimbus-usage",
            what: "usage records",
            on_failure: "invocations go on unmetered until the store recovers",
            flush_every: FLUSH_INTERVAL,
            capacity: CHANNEL_CAPACITY,
            shards: shards(),
            prune_every: PRUNE_EVERY,
        };
        let batcher = Batcher::start(writing, config)
            .map_err(|e| crate::MeteringError::Store(format!("cannot start the writer: {e}")))?;
        Ok(Self { batcher, spans })
    }

    /// What happened to records so far.
    pub fn counts(&self) -> MeterCounts {
        self.batcher.counts()
    }

    /// Writes what is queued and stops the writer; later records are counted as lost.
    pub fn close(&self) {
        self.batcher.close();
    }
}

impl UsageSink for Meter {
    fn record(&self, record: UsageRecord) {
        self.batcher.push(record);
    }

    fn provisioned(&self, usage: ProvisionedUsage) {
        let mut spans = lock(&self.spans);
        if spans.len() < MAX_PENDING_SPANS {
            spans.push(usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MeteringError;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use crate::record::{Outcome, RECORD_VERSION, TriggerKind};

    fn record(i: u64) -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: format!("i{i}").into(),
            request_id: format!("r{i}").into(),
            tenant: "default".into(),
            app: "a".into(),
            function: "f".into(),
            version: 1,
            trigger: TriggerKind::Queue,
            start_unix_ms: 1000 + i,
            duration_us: 10,
            billed_ms: 1,
            memory_mb: 128,
            peak_memory_bytes: 0,
            cpu_us: 5,
            bytes_in: 0,
            bytes_out: 0,
            outcome: Outcome::Ok,
            cold_start: false,
        }
    }

    /// A store that keeps batches in memory and fails while `full` is set, as a full disk
    /// does.
    #[derive(Clone, Default)]
    struct FlakyStore {
        kept: Arc<Mutex<Vec<UsageRecord>>>,
        spans: Arc<Mutex<Vec<ProvisionedUsage>>>,
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl RecordStore for FlakyStore {
        fn append(
            &mut self,
            batch: &[UsageRecord],
            spans: &[ProvisionedUsage],
        ) -> Result<(), MeteringError> {
            if self.full.load(Ordering::SeqCst) {
                return Err(MeteringError::Store(
                    "No space left on device (os error 28)".into(),
                ));
            }
            lock(&self.kept).extend_from_slice(batch);
            lock(&self.spans).extend_from_slice(spans);
            Ok(())
        }

        fn prune(&mut self, _before_ms: u64) -> Result<u64, MeteringError> {
            Ok(0)
        }
    }

    #[test]
    fn records_are_written_in_batches_and_close_flushes() {
        let store = FlakyStore::default();
        let meter = Meter::start(store.clone(), Duration::from_secs(3600), None).unwrap();
        for i in 0..1000 {
            meter.record(record(i));
        }
        meter.close();
        assert_eq!(lock(&store.kept).len(), 1000);
        let counts = meter.counts();
        assert_eq!(
            (counts.accepted, counts.written, counts.lost),
            (1000, 1000, 0)
        );
        // After close, records are counted, not kept.
        meter.record(record(1000));
        assert_eq!(meter.counts().lost, 1);
    }

    #[test]
    fn a_full_disk_loses_records_counts_them_and_recovers() {
        let store = FlakyStore::default();
        store.full.store(true, Ordering::SeqCst);
        let meter = Meter::start(store.clone(), Duration::from_secs(3600), None).unwrap();
        for i in 0..10 {
            meter.record(record(i));
        }
        // Wait for the writer to try (and fail) the whole batch.
        let started = Instant::now();
        while meter.counts().lost < 10 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "writer never tried"
            );
            std::thread::yield_now();
        }
        store.full.store(false, Ordering::SeqCst);
        for i in 10..15 {
            meter.record(record(i));
        }
        meter.close();
        let counts = meter.counts();
        assert_eq!(counts.lost, 10);
        assert_eq!(counts.written, 5);
        assert_eq!(lock(&store.kept).len(), 5);
    }

    fn span(from: u64) -> ProvisionedUsage {
        ProvisionedUsage {
            tenant: "default".into(),
            app: "a".into(),
            function: "f".into(),
            instances: 1,
            memory_mb: 128,
            from_unix_ms: from,
            until_unix_ms: from + 60_000,
        }
    }

    #[test]
    fn provisioned_spans_are_written_without_invocations_and_survive_a_full_disk() {
        let store = FlakyStore::default();
        let meter = Meter::start(store.clone(), Duration::from_secs(3600), None).unwrap();
        // No invocation at all: the span is written anyway.
        meter.provisioned(span(0));
        let started = Instant::now();
        while lock(&store.spans).is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "never written");
            std::thread::yield_now();
        }
        // A full disk fails the batch; the span waits and is written once there is room.
        store.full.store(true, Ordering::SeqCst);
        meter.provisioned(span(60_000));
        meter.record(record(1));
        let started = Instant::now();
        while meter.counts().failed_batches == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "writer never tried"
            );
            std::thread::yield_now();
        }
        store.full.store(false, Ordering::SeqCst);
        meter.close();
        let spans = lock(&store.spans);
        assert_eq!(*spans, vec![span(0), span(60_000)]);
        // The record of the failed batch is lost and counted, as records are.
        assert_eq!(meter.counts().lost, 1);
    }
}
