//! The meter: takes usage records from invocations without ever blocking them, and writes
//! them to the store in batches from one thread.
//!
//! ```text
//! invocation ends ─► Meter::record ─try_send─► bounded channel (65,536) ─► writer thread
//!                      (never waits; a full            wakes every FLUSH_INTERVAL, drains →
//!                       channel counts as lost)        one transaction (records + rollups)
//! ```
//!
//! **Durability window.** A record is durable once its batch commits: at most
//! [`FLUSH_INTERVAL`] plus one commit (an fsync) after the invocation ends. A kill -9 loses at
//! most the records of that window; everything committed before survives (redb commits are
//! atomic), which `crates/cli/tests/all/usage.rs` checks by killing the real binary.
//!
//! **A failing store** (a full disk) never stops invocations: the batch is dropped, its records
//! are counted in [`MeterStats::lost`], an error is logged (at most once a minute), and the next
//! batch tries again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::UsageSink;
use crate::record::UsageRecord;
use crate::store::RecordStore;

/// How long records gather before a batch is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Records waiting for the writer at most; past this they are counted as lost.
pub const CHANNEL_CAPACITY: usize = 65_536;
/// How often old raw records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Errors of a failing store are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts of what happened to records.
#[derive(Debug, Default)]
pub struct MeterStats {
    /// Records handed to the meter.
    pub accepted: AtomicU64,
    /// Records committed to the store.
    pub written: AtomicU64,
    /// Records lost: the channel was full, or their batch could not be written.
    pub lost: AtomicU64,
    /// Batches that failed to be written.
    pub failed_batches: AtomicU64,
}

/// A snapshot of [`MeterStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeterCounts {
    /// Records handed to the meter.
    pub accepted: u64,
    /// Records committed to the store.
    pub written: u64,
    /// Records lost.
    pub lost: u64,
    /// Batches that failed to be written.
    pub failed_batches: u64,
}

impl MeterStats {
    /// The counts now.
    pub fn snapshot(&self) -> MeterCounts {
        MeterCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
        }
    }
}

/// The meter: a [`UsageSink`] writing through a [`RecordStore`].
pub struct Meter {
    // Loaded without a lock on every record (two worker threads contend for a mutex here at
    // 15k+ invocations/s); emptied by `close`.
    tx: arc_swap::ArcSwapOption<SyncSender<UsageRecord>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<MeterStats>,
}

impl Meter {
    /// Starts the writer thread over `store`, pruning records older than `retention`, and
    /// counting every batch into `metrics` (if any) as it passes.
    pub fn start(
        store: impl RecordStore,
        retention: Duration,
        metrics: Option<Arc<crate::Metrics>>,
    ) -> Result<Self, crate::MeteringError> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let stats = Arc::new(MeterStats::default());
        let writer = Writer {
            store,
            rx,
            stats: stats.clone(),
            metrics,
            retention,
            last_prune: None,
            last_error_log: None,
        };
        let handle = std::thread::Builder::new()
            .name("nimbus-usage".into())
            .spawn(move || writer.run())
            .map_err(|e| crate::MeteringError::Store(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            tx: arc_swap::ArcSwapOption::from_pointee(tx),
            writer: Mutex::new(Some(handle)),
            stats,
        })
    }

    /// What happened to records so far.
    pub fn stats(&self) -> &Arc<MeterStats> {
        &self.stats
    }

    /// Writes what is queued and stops the writer; later records are counted as lost.
    pub fn close(&self) {
        drop(self.tx.swap(None));
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

impl UsageSink for Meter {
    fn record(&self, record: UsageRecord) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let guard = self.tx.load();
        let sent = match guard.as_deref() {
            Some(tx) => match tx.try_send(record) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !sent {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Writer<S> {
    store: S,
    rx: mpsc::Receiver<UsageRecord>,
    stats: Arc<MeterStats>,
    metrics: Option<Arc<crate::Metrics>>,
    retention: Duration,
    last_prune: Option<Instant>,
    last_error_log: Option<Instant>,
}

impl<S: RecordStore> Writer<S> {
    fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            // Sleep, then take whatever arrived. The writer never blocks in `recv`: a sender
            // finding a receiver waiting must wake it (a futex call and a context switch per
            // record, measured at ~10% of the minimal component's throughput), while a send to
            // a channel nobody waits on is only a few atomic operations.
            std::thread::sleep(FLUSH_INTERVAL);
            let open = loop {
                match self.rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            if !batch.is_empty() {
                self.flush(&mut batch);
            }
            self.maybe_prune();
            if !open {
                return;
            }
        }
    }

    fn flush(&mut self, batch: &mut Vec<UsageRecord>) {
        let n = batch.len() as u64;
        if let Some(metrics) = &self.metrics {
            metrics.observe(batch);
        }
        match self.store.append(batch) {
            Ok(()) => {
                self.stats.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.lost.fetch_add(n, Ordering::Relaxed);
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let due = self
                    .last_error_log
                    .is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY);
                if due {
                    self.last_error_log = Some(Instant::now());
                    let lost = self.stats.lost.load(Ordering::Relaxed);
                    tracing::error!(error = %e, lost_records = lost, "usage records could not be written; invocations go on unmetered until the store recovers");
                }
            }
        }
        batch.clear();
    }

    fn maybe_prune(&mut self) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let before = now_ms.saturating_sub(self.retention.as_millis() as u64);
        match self.store.prune(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "pruned old usage records"),
            Err(e) => tracing::warn!(error = %e, "pruning usage records failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MeteringError;
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
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl RecordStore for FlakyStore {
        fn append(&mut self, batch: &[UsageRecord]) -> Result<(), MeteringError> {
            if self.full.load(Ordering::SeqCst) {
                return Err(MeteringError::Store(
                    "No space left on device (os error 28)".into(),
                ));
            }
            lock(&self.kept).extend_from_slice(batch);
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
        let counts = meter.stats().snapshot();
        assert_eq!(
            (counts.accepted, counts.written, counts.lost),
            (1000, 1000, 0)
        );
        // After close, records are counted, not kept.
        meter.record(record(1000));
        assert_eq!(meter.stats().snapshot().lost, 1);
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
        while meter.stats().snapshot().lost < 10 {
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
        let counts = meter.stats().snapshot();
        assert_eq!(counts.lost, 10);
        assert_eq!(counts.written, 5);
        assert_eq!(lock(&store.kept).len(), 5);
    }
}
