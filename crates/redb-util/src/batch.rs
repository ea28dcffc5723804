//! A batching writer: items from hot paths go into a bounded in-memory queue, and one thread
//! writes them to a [`BatchStore`] every [`BatchConfig::flush_every`].
//!
//! ```text
//! hot path ─► Batcher::push ─► the thread's shard:  ─swap each─► writer thread: every
//!             (never waits;     Mutex<Vec<T>>,                    flush_every, one append;
//!              full: lost)      bounded                           prune every prune_every
//! ```
//!
//! The writer sleeps and swaps the queues out instead of being woken per item: a sender
//! finding a receiver blocked in `recv` must wake it (a futex call and a context switch per
//! item, measured at ~10% of the minimal component's throughput), while a push is one lock
//! and a move.
//!
//! **Shards** ([`BatchConfig::shards`]): with one queue, every push takes a lock and bumps a
//! counter on cache lines that the other worker threads write too, so each push moves them
//! between cores. With shards, a thread pushes into its own (chosen once per thread), and
//! only the writer, once a flush, touches them all. Items of different shards reach the
//! store in no particular order; a batcher whose items must stay in push order (log lines)
//! keeps one shard.
//!
//! **Durability window.** An item is durable once its batch is appended: at most
//! `flush_every` plus one append (a commit) after it was pushed.
//!
//! **A failing store** (a full disk) never blocks or fails the pushers: the batch is dropped,
//! its items are counted as lost, an error is logged (at most once a minute), and the next
//! batch tries again.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Errors of a failing store are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where a [`Batcher`] writes.
pub trait BatchStore<T>: Send + 'static {
    /// The store's error.
    type Error: Display;

    /// Appends one batch, all or nothing.
    fn append(&mut self, batch: &[T]) -> Result<(), Self::Error>;

    /// Whether the store has something of its own to write even if no item came (then the
    /// writer calls [`append`](Self::append) with an empty batch).
    fn pending(&self) -> bool {
        false
    }

    /// Applies the store's retention as of `now_ms` (wall clock, ms since the epoch); returns
    /// how many items it dropped.
    fn prune(&mut self, now_ms: u64) -> Result<u64, Self::Error>;
}

/// How a [`Batcher`] runs.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// The writer thread's name.
    pub thread: &'static str,
    /// What the items are, for the log ("usage records").
    pub what: &'static str,
    /// What a failed write means for users, for the log.
    pub on_failure: &'static str,
    /// How long items gather before a batch is written.
    pub flush_every: Duration,
    /// Items waiting for the writer at most, over all shards (each holds an equal part);
    /// past this they are counted as lost.
    pub capacity: usize,
    /// How many queues pushers spread over (at least 1); see the module doc. Items of one
    /// shard are written in push order.
    pub shards: usize,
    /// How often [`BatchStore::prune`] runs (first at the first flush).
    pub prune_every: Duration,
}

/// What happened to items so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BatchCounts {
    /// Items pushed.
    pub accepted: u64,
    /// Items appended to the store.
    pub written: u64,
    /// Items lost: the queue was full or closed, or their batch could not be written.
    pub lost: u64,
    /// Batches that failed to be written.
    pub failed_batches: u64,
}

/// The writer's counts (pushers count into their shard).
#[derive(Default)]
struct Stats {
    written: AtomicU64,
    lost: AtomicU64,
    failed_batches: AtomicU64,
}

/// One queue and the counts of its pushers, on cache lines of its own.
#[repr(align(128))]
struct Shard<T> {
    items: Mutex<Vec<T>>,
    accepted: AtomicU64,
    lost: AtomicU64,
}

struct Queue<T> {
    shards: Box<[Shard<T>]>,
    open: AtomicBool,
    /// Per shard.
    capacity: usize,
}

impl<T> Queue<T> {
    /// The calling thread's shard.
    fn shard(&self) -> &Shard<T> {
        let index = if self.shards.len() == 1 {
            0
        } else {
            THREAD_SEQ.with(|seq| *seq) % self.shards.len()
        };
        // `index` is below the length.
        &self.shards[index]
    }
}

static NEXT_THREAD_SEQ: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The thread's place in the order in which threads first pushed into a sharded batcher:
    /// the first threads to push (the runtime's workers) get shards of their own.
    static THREAD_SEQ: usize = NEXT_THREAD_SEQ.fetch_add(1, Ordering::Relaxed);
}

/// The pushing side; the writer thread runs until [`Batcher::close`] (or drop).
pub struct Batcher<T> {
    queue: Arc<Queue<T>>,
    stats: Arc<Stats>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Batcher<T> {
    /// What happened to items so far.
    pub fn counts(&self) -> BatchCounts {
        let shards = self.queue.shards.iter();
        let (accepted, lost) = shards.fold((0, 0), |(accepted, lost), shard| {
            (
                accepted + shard.accepted.load(Ordering::Relaxed),
                lost + shard.lost.load(Ordering::Relaxed),
            )
        });
        BatchCounts {
            accepted,
            written: self.stats.written.load(Ordering::Relaxed),
            lost: lost + self.stats.lost.load(Ordering::Relaxed),
            failed_batches: self.stats.failed_batches.load(Ordering::Relaxed),
        }
    }

    /// Writes what is queued and stops the writer; later items are counted as lost.
    pub fn close(&self) {
        {
            // Under every shard's lock: a push either lands before the final drain or sees
            // the batcher closed.
            let _held: Vec<_> = self.queue.shards.iter().map(|s| lock(&s.items)).collect();
            self.queue.open.store(false, Ordering::Relaxed);
        }
        if let Some(handle) = lock(&self.writer).take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl<T> Drop for Batcher<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the writer thread over `store`.
    pub fn start<S: BatchStore<T>>(store: S, config: BatchConfig) -> std::io::Result<Self> {
        let shards = config.shards.max(1);
        let queue = Arc::new(Queue {
            shards: (0..shards)
                .map(|_| Shard {
                    items: Mutex::new(Vec::new()),
                    accepted: AtomicU64::new(0),
                    lost: AtomicU64::new(0),
                })
                .collect(),
            open: AtomicBool::new(true),
            capacity: config.capacity.div_ceil(shards),
        });
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            store,
            queue: queue.clone(),
            stats: stats.clone(),
            last_prune: None,
            last_error_log: None,
            config,
        };
        let handle = std::thread::Builder::new()
            .name(writer.config.thread.into())
            .spawn(move || writer.run())?;
        Ok(Self {
            queue,
            stats,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Queues one item; never waits. Gives it back if it was not taken (the queue is full or
    /// closed); it is then counted lost.
    pub fn push(&self, item: T) -> Result<(), T> {
        let shard = self.queue.shard();
        shard.accepted.fetch_add(1, Ordering::Relaxed);
        {
            let mut items = lock(&shard.items);
            if self.queue.open.load(Ordering::Relaxed) && items.len() < self.queue.capacity {
                items.push(item);
                return Ok(());
            }
        }
        shard.lost.fetch_add(1, Ordering::Relaxed);
        Err(item)
    }
}

struct Writer<T, S> {
    store: S,
    queue: Arc<Queue<T>>,
    stats: Arc<Stats>,
    last_prune: Option<Instant>,
    last_error_log: Option<Instant>,
    config: BatchConfig,
}

impl<T, S: BatchStore<T>> Writer<T, S> {
    fn run(mut self) {
        let mut batch = Vec::new();
        // One spare vector per shard, swapped with the shard's queue at each flush: both keep
        // their allocations from flush to flush.
        let mut spares: Vec<Vec<T>> = self.queue.shards.iter().map(|_| Vec::new()).collect();
        loop {
            // `close` unparks the thread, so shutting down does not wait out the interval.
            std::thread::park_timeout(self.config.flush_every);
            let mut open = true;
            for (i, (shard, spare)) in self.queue.shards.iter().zip(spares.iter_mut()).enumerate() {
                let mut items = lock(&shard.items);
                std::mem::swap(&mut *items, spare);
                if i == 0 {
                    // `close` flips this holding every shard's lock: seen closed under the
                    // first, no push lands anywhere after this pass. Seen open, a push may
                    // land in a shard already swapped; the next pass (at once: `close`
                    // unparks) takes it.
                    open = self.queue.open.load(Ordering::Relaxed);
                }
            }
            if let [only] = spares.as_mut_slice() {
                std::mem::swap(only, &mut batch);
            } else {
                for spare in &mut spares {
                    batch.append(spare);
                }
            }
            if !batch.is_empty() || self.store.pending() {
                self.flush(&batch);
                batch.clear();
            }
            self.maybe_prune();
            if !open {
                return;
            }
        }
    }

    fn flush(&mut self, batch: &[T]) {
        let n = batch.len() as u64;
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
                    tracing::error!(error = %e, lost, "{} could not be written; {}", self.config.what, self.config.on_failure);
                }
            }
        }
    }

    fn maybe_prune(&mut self) {
        if self
            .last_prune
            .is_some_and(|at| at.elapsed() < self.config.prune_every)
        {
            return;
        }
        self.last_prune = Some(Instant::now());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match self.store.prune(now_ms) {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "pruned old {}", self.config.what),
            Err(e) => tracing::warn!(error = %e, "pruning {} failed", self.config.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps batches in memory; fails while `full` is set, as a full disk does.
    #[derive(Clone, Default)]
    struct Memory {
        kept: Arc<Mutex<Vec<u64>>>,
        batches: Arc<AtomicU64>,
        full: Arc<AtomicBool>,
    }

    impl BatchStore<u64> for Memory {
        type Error = String;

        fn append(&mut self, batch: &[u64]) -> Result<(), String> {
            if self.full.load(Ordering::SeqCst) {
                return Err("No space left on device (os error 28)".into());
            }
            self.batches.fetch_add(1, Ordering::SeqCst);
            lock(&self.kept).extend_from_slice(batch);
            Ok(())
        }

        fn prune(&mut self, _now_ms: u64) -> Result<u64, String> {
            Ok(0)
        }
    }

    fn config(capacity: usize) -> BatchConfig {
        BatchConfig {
            thread: "test-batcher",
            what: "test items",
            on_failure: "they are lost",
            flush_every: Duration::from_millis(50),
            capacity,
            shards: 1,
            prune_every: Duration::from_secs(3600),
        }
    }

    #[test]
    fn sharded_pushes_from_many_threads_are_all_written_or_counted() {
        let store = Memory::default();
        let config = BatchConfig {
            shards: 4,
            ..config(4 * 300)
        };
        let batcher = Arc::new(Batcher::start(store.clone(), config).unwrap());
        // Eight threads over four shards push 1,000 each, past a shard's 300 in a flush.
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let batcher = batcher.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| batcher.push(t * 1000 + i).is_ok())
                        .count() as u64
                })
            })
            .collect();
        let taken: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        batcher.close();
        let counts = batcher.counts();
        assert_eq!(counts.accepted, 8000);
        assert_eq!(counts.written, taken);
        assert_eq!(counts.lost, 8000 - taken);
        let mut kept = lock(&store.kept).clone();
        assert_eq!(kept.len() as u64, taken);
        // Each thread's items, in push order.
        for t in 0..8u64 {
            let mine: Vec<u64> = kept.iter().copied().filter(|i| i / 1000 == t).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "thread {t} out of order"
            );
        }
        kept.sort_unstable();
        kept.dedup();
        assert_eq!(kept.len() as u64, taken, "an item written twice");
        assert!(batcher.push(1).is_err(), "closed");
    }

    #[test]
    fn items_are_written_in_batches_in_order_and_close_flushes() {
        let store = Memory::default();
        let batcher = Batcher::start(store.clone(), config(10_000)).unwrap();
        for i in 0..1000 {
            assert!(batcher.push(i).is_ok());
        }
        batcher.close();
        assert_eq!(*lock(&store.kept), (0..1000).collect::<Vec<_>>());
        assert!(
            store.batches.load(Ordering::SeqCst) <= 2,
            "one batch, or two"
        );
        let counts = batcher.counts();
        assert_eq!(
            (counts.accepted, counts.written, counts.lost),
            (1000, 1000, 0)
        );
        // After close, items are counted, not kept.
        assert_eq!(batcher.push(1000), Err(1000));
        assert_eq!(batcher.counts().lost, 1);
    }

    #[test]
    fn past_capacity_items_are_counted_lost_not_queued() {
        let store = Memory::default();
        store.full.store(true, Ordering::SeqCst);
        let config = BatchConfig {
            // The writer drains only at close.
            flush_every: Duration::from_secs(3600),
            ..config(10)
        };
        let batcher = Batcher::start(store.clone(), config).unwrap();
        let taken = (0..100).filter(|i| batcher.push(*i).is_ok()).count();
        assert_eq!(taken, 10);
        assert_eq!(batcher.counts().lost, 90);
        // Closing writes the ten, and the full store loses them too.
        batcher.close();
        assert_eq!(batcher.counts().lost, 100);
    }

    #[test]
    fn a_failing_store_loses_batches_counts_them_and_recovers() {
        let store = Memory::default();
        store.full.store(true, Ordering::SeqCst);
        let batcher = Batcher::start(store.clone(), config(10_000)).unwrap();
        for i in 0..10 {
            batcher.push(i).unwrap();
        }
        let started = Instant::now();
        while batcher.counts().lost < 10 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "writer never tried"
            );
            std::thread::yield_now();
        }
        assert_eq!(batcher.counts().failed_batches, 1);
        store.full.store(false, Ordering::SeqCst);
        for i in 10..15 {
            batcher.push(i).unwrap();
        }
        batcher.close();
        let counts = batcher.counts();
        assert_eq!((counts.lost, counts.written), (10, 5));
        assert_eq!(*lock(&store.kept), vec![10, 11, 12, 13, 14]);
    }
}
