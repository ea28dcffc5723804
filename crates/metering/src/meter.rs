//! The meter: takes usage records from invocations without ever blocking them, and writes
//! them to the store in batches from one thread (a [`nimbus_redb::Batcher`]).
//!
//! ```text
//! invocation ends ─► Meter::record ─► bounded queue (65,536) ─► writer thread
//!                      (never waits)      │ full             every FLUSH_INTERVAL: metrics,
//!                                         ▼                  then one transaction: records,
//!                                    HourlySums ───────────► their rollups, and the sums
//! ```
//!
//! **Durability window.** A record is durable once its batch commits: at most
//! [`FLUSH_INTERVAL`] plus one commit (an fsync) after the invocation ends. A kill -9 loses at
//! most the records of that window; everything committed before survives (redb commits are
//! atomic), which `crates/cli/tests/all/usage.rs` checks by killing the real binary.
//!
//! **The bill survives lost records.** A record that finds the queue full (the writer stalled
//! on a slow disk), or whose batch fails (a full disk), loses its per-invocation row but not
//! its usage: it is summed into [`HourlySums`] per hour and function, which the next batch adds
//! to the rollups the bill is read from. Such records count as [`MeterCounts::lost`]; only
//! those the sums could not take either (past [`carry::MAX_GROUPS`](crate::carry::MAX_GROUPS)
//! groups, or after [`Meter::close`]) count as [`MeterCounts::unbilled`]. Either is logged, at
//! most once a minute.
//!
//! **A failing store** never stops invocations: the batch's records go to the sums, an error
//! is logged (at most once a minute), and the next batch tries again.
//!
//! **Provisioned time** ([`ProvisionedUsage`], a span a minute per provisioned function) goes
//! into the same sums: the time idle provisioned instances are billed by is never a record.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nimbus_redb::{BatchConfig, BatchStore, Batcher};
use serde::{Deserialize, Serialize};

use crate::UsageSink;
use crate::carry::HourlySums;
use crate::provisioned::ProvisionedUsage;
use crate::record::UsageRecord;
use crate::store::RecordStore;

/// How long records gather before a batch is written: the kill -9 window. Each batch costs a
/// commit and an fsync whatever its size: at 50 ms the fsyncs alone were ~0.9% of the
/// process's CPU under load, a quarter of what metering cost (BENCHMARKS.md, metering
/// overhead).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Records waiting for the writer at most, over all shards; past this they are summed (see
/// the module doc).
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
/// Lost or unbilled records are logged at most this often.
const LOSS_LOG_EVERY: Duration = Duration::from_secs(60);

/// What happened to records so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MeterCounts {
    /// Records taken.
    pub accepted: u64,
    /// Records committed to the store with their rows.
    pub written: u64,
    /// Records whose per-invocation row was not stored (the queue was full or closed, or their
    /// batch could not be written). Their usage is still billed unless also `unbilled`.
    pub lost: u64,
    /// Batches that failed to be written.
    pub failed_batches: u64,
    /// Of the lost records, those whose usage is in no rollup either: the bill is short by
    /// these invocations.
    #[serde(default)]
    pub unbilled: u64,
}

/// The meter: a [`UsageSink`] writing through a [`RecordStore`].
pub struct Meter {
    batcher: Batcher<UsageRecord>,
    carry: Arc<Mutex<Carry>>,
    metrics: Option<Arc<crate::Metrics>>,
}

/// Usage waiting for the next batch without records of its own.
#[derive(Default)]
struct Carry {
    sums: HourlySums,
    unbilled: u64,
    /// Set by [`Meter::close`]: nothing will write sums any more.
    closed: bool,
    last_log: Option<Instant>,
}

impl Carry {
    /// Sums a record whose row is lost.
    fn add(&mut self, record: &UsageRecord) {
        if self.closed || !self.sums.add_record(record) {
            self.unbilled += 1;
        }
    }

    fn log_due(&mut self) -> bool {
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= LOSS_LOG_EVERY);
        if due {
            self.last_log = Some(Instant::now());
        }
        due
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer's side: counts each batch into the metrics, then stores it with the sums
/// gathered since the last one.
struct Writing<S> {
    store: S,
    metrics: Option<Arc<crate::Metrics>>,
    retention: Duration,
    carry: Arc<Mutex<Carry>>,
}

impl<S: RecordStore> BatchStore<UsageRecord> for Writing<S> {
    type Error = crate::MeteringError;

    fn append(&mut self, batch: &[UsageRecord]) -> Result<(), Self::Error> {
        if let Some(metrics) = &self.metrics {
            metrics.observe(batch);
        }
        let sums = std::mem::take(&mut lock(&self.carry).sums);
        match self.store.append(batch, &sums) {
            Ok(()) => {
                if let Some(metrics) = &self.metrics {
                    metrics.observe_provisioned(&sums);
                }
                Ok(())
            }
            Err(e) => {
                // The batch's rows are lost (the batcher counts them); their usage and the
                // sums wait for the next batch, before anything summed since.
                let mut carry = lock(&self.carry);
                let since = std::mem::replace(&mut carry.sums, sums);
                carry.sums.merge(since);
                for record in batch {
                    carry.add(record);
                }
                Err(e)
            }
        }
    }

    fn pending(&self) -> bool {
        !lock(&self.carry).sums.is_empty()
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
        let carry = Arc::new(Mutex::new(Carry::default()));
        let writing = Writing {
            store,
            metrics: metrics.clone(),
            retention,
            carry: carry.clone(),
        };
        let config = BatchConfig {
            thread: "nimbus-usage",
            what: "usage records",
            on_failure: "their usage waits in memory for the store to recover; per-invocation \
                         records are lost meanwhile",
            flush_every: FLUSH_INTERVAL,
            capacity: CHANNEL_CAPACITY,
            shards: shards(),
            prune_every: PRUNE_EVERY,
        };
        let batcher = Batcher::start(writing, config)
            .map_err(|e| crate::MeteringError::Store(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            batcher,
            carry,
            metrics,
        })
    }

    /// What happened to records so far.
    pub fn counts(&self) -> MeterCounts {
        let c = self.batcher.counts();
        MeterCounts {
            accepted: c.accepted,
            written: c.written,
            lost: c.lost,
            failed_batches: c.failed_batches,
            unbilled: lock(&self.carry).unbilled,
        }
    }

    /// Writes what is queued and stops the writer; the usage of later records is unbilled.
    pub fn close(&self) {
        self.batcher.close();
        let mut carry = lock(&self.carry);
        carry.closed = true;
        // Sums the last batch could not write.
        carry.unbilled += carry.sums.records();
        carry.sums = HourlySums::default();
    }
}

impl UsageSink for Meter {
    fn record(&self, record: UsageRecord) {
        let Err(record) = self.batcher.push(record) else {
            return;
        };
        // The writer is behind (or stopped): the row is lost, the usage is summed. Metrics
        // count it now, as the writer would have.
        if let Some(metrics) = &self.metrics {
            metrics.observe(std::slice::from_ref(&record));
        }
        let mut carry = lock(&self.carry);
        carry.add(&record);
        if !carry.closed && carry.log_due() {
            let (lost, unbilled) = (self.batcher.counts().lost, carry.unbilled);
            tracing::warn!(
                lost,
                unbilled,
                "the usage writer is behind: records past its queue are summed into the hourly \
                 rollups without their per-invocation rows"
            );
        }
    }

    fn provisioned(&self, usage: ProvisionedUsage) {
        let mut carry = lock(&self.carry);
        if !carry.sums.add_span(&usage) && carry.log_due() {
            tracing::error!(
                app = %usage.app,
                function = %usage.function,
                "provisioned usage dropped: the usage store has failed for too long"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MeteringError;
    use std::sync::atomic::Ordering;

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

    /// A store that keeps batches in memory, fails while `full` is set (as a full disk does),
    /// and blocks while `stall` is held (as a slow disk does).
    #[derive(Clone, Default)]
    struct FlakyStore {
        kept: Arc<Mutex<Vec<UsageRecord>>>,
        sums: Arc<Mutex<HourlySums>>,
        full: Arc<std::sync::atomic::AtomicBool>,
        stall: Arc<Mutex<()>>,
        appending: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FlakyStore {
        /// Invocations billed: those with records kept plus those only summed.
        fn billed(&self) -> u64 {
            lock(&self.kept).len() as u64
                + lock(&self.sums)
                    .groups()
                    .map(|(_, c)| c.invocations)
                    .sum::<u64>()
        }
    }

    impl RecordStore for FlakyStore {
        fn append(
            &mut self,
            batch: &[UsageRecord],
            sums: &HourlySums,
        ) -> Result<(), MeteringError> {
            self.appending.store(true, Ordering::SeqCst);
            let _stalled = lock(&self.stall);
            if self.full.load(Ordering::SeqCst) {
                return Err(MeteringError::Store(
                    "No space left on device (os error 28)".into(),
                ));
            }
            lock(&self.kept).extend_from_slice(batch);
            lock(&self.sums).merge(sums.clone());
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
    fn a_full_disk_loses_rows_not_the_bill_and_recovers() {
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
        assert_eq!((counts.lost, counts.unbilled), (10, 0));
        assert_eq!(counts.written, 5);
        // Only the later rows are kept, but all 15 invocations are billed.
        assert_eq!(lock(&store.kept).len(), 5);
        assert_eq!(store.billed(), 15);
        assert_eq!(lock(&store.sums).records(), 10);
    }

    #[test]
    fn a_stalled_writer_loses_rows_past_its_queue_not_the_bill() {
        let store = FlakyStore::default();
        let stall = lock(&store.stall);
        let meter = Meter::start(store.clone(), Duration::from_secs(3600), None).unwrap();
        meter.record(record(0));
        // The writer takes that record and blocks in the store.
        let started = Instant::now();
        while !store.appending.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(10), "never wrote");
            std::thread::yield_now();
        }
        // This thread's shard fills up; the rest is summed.
        let per_shard = CHANNEL_CAPACITY.div_ceil(shards()) as u64;
        let n = per_shard + 1000;
        for i in 1..=n {
            meter.record(record(i));
        }
        assert_eq!(meter.counts().lost, 1000);
        drop(stall);
        meter.close();
        let counts = meter.counts();
        assert_eq!(
            (
                counts.accepted,
                counts.written,
                counts.lost,
                counts.unbilled
            ),
            (n + 1, per_shard + 1, 1000, 0)
        );
        assert_eq!(lock(&store.sums).records(), 1000);
        assert_eq!(store.billed(), n + 1);
        // After close, nothing will write sums: the usage of a late record is unbilled.
        meter.record(record(n + 1));
        assert_eq!((meter.counts().lost, meter.counts().unbilled), (1001, 1));
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

    fn provisioned_mb_ms(store: &FlakyStore) -> u64 {
        lock(&store.sums)
            .groups()
            .map(|(_, c)| c.provisioned_mb_ms)
            .sum()
    }

    #[test]
    fn provisioned_spans_are_written_without_invocations_and_survive_a_full_disk() {
        let store = FlakyStore::default();
        let meter = Meter::start(store.clone(), Duration::from_secs(3600), None).unwrap();
        // No invocation at all: the span is written anyway.
        meter.provisioned(span(0));
        let started = Instant::now();
        while lock(&store.sums).is_empty() {
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
        assert_eq!(provisioned_mb_ms(&store), 2 * 128 * 60_000);
        // The record of the failed batch lost its row, not its usage.
        assert_eq!((meter.counts().lost, meter.counts().unbilled), (1, 0));
        assert_eq!(store.billed(), 1);
    }
}
