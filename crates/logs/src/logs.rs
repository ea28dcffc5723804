//! The log sink: lines go into a bounded channel (never blocking the guest), a writer thread
//! stores them in batches and applies retention, and live followers get each line as it comes.
//!
//! As in the usage meter, the writer sleeps and drains instead of blocking in `recv`, so a
//! line costs its sender no wake-up. A line is durable at most 50 ms plus a commit after it was
//! written; followers see it at once (before it is stored).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use crate::LogSink;
use crate::error::LogError;
use crate::line::LogLine;
use crate::store::LogDb;

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
const CHANNEL_CAPACITY: usize = 65_536;
/// Lines a slow follower may lag behind before it misses some (it is told how many).
const FOLLOW_BUFFER: usize = 4096;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// How long and how much the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Lines older than this are dropped (default 7 days).
    pub max_age: Duration,
    /// Past this many bytes the oldest lines are dropped (default 1 GiB).
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
        }
    }
}

/// What happened to lines since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogCounts {
    /// Lines handed to the sink.
    pub accepted: u64,
    /// Lines stored.
    pub written: u64,
    /// Lines lost (a full channel or a failed write).
    pub lost: u64,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    written: AtomicU64,
    lost: AtomicU64,
}

/// The log sink over a [`LogDb`].
pub struct Logs {
    tx: arc_swap::ArcSwapOption<SyncSender<LogLine>>,
    live: broadcast::Sender<Arc<LogLine>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
    db: LogDb,
}

impl Logs {
    /// Starts the writer thread over `db`.
    pub fn start(db: LogDb, retention: Retention) -> Result<Self, LogError> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            db: db.clone(),
            rx,
            stats: stats.clone(),
            retention,
            last_prune: None,
            last_error_log: None,
        };
        let handle = std::thread::Builder::new()
            .name("nimbus-logs".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::Store(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            tx: arc_swap::ArcSwapOption::from_pointee(tx),
            live: broadcast::channel(FOLLOW_BUFFER).0,
            writer: Mutex::new(Some(handle)),
            stats,
            db,
        })
    }

    /// The store, for queries.
    pub fn db(&self) -> &LogDb {
        &self.db
    }

    /// Every line from now on, as it is written.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.live.subscribe()
    }

    /// What happened to lines so far.
    pub fn counts(&self) -> LogCounts {
        LogCounts {
            accepted: self.stats.accepted.load(Ordering::Relaxed),
            written: self.stats.written.load(Ordering::Relaxed),
            lost: self.stats.lost.load(Ordering::Relaxed),
        }
    }

    /// Stores what is queued and stops the writer; later lines are counted as lost.
    pub fn close(&self) {
        drop(self.tx.swap(None));
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl LogSink for Logs {
    fn log(&self, line: LogLine) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::new(line.clone()));
        }
        let guard = self.tx.load();
        let sent = match guard.as_deref() {
            Some(tx) => match tx.try_send(line) {
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

impl Drop for Logs {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    db: LogDb,
    rx: mpsc::Receiver<LogLine>,
    stats: Arc<Stats>,
    retention: Retention,
    last_prune: Option<Instant>,
    last_error_log: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            std::thread::sleep(FLUSH_INTERVAL);
            let open = loop {
                match self.rx.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            if !batch.is_empty() {
                let n = batch.len() as u64;
                match self.db.append(&batch) {
                    Ok(()) => {
                        self.stats.written.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.stats.lost.fetch_add(n, Ordering::Relaxed);
                        let due = self
                            .last_error_log
                            .is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY);
                        if due {
                            self.last_error_log = Some(Instant::now());
                            tracing::error!(error = %e, "function log lines could not be stored");
                        }
                    }
                }
                batch.clear();
            }
            self.maybe_prune();
            if !open {
                return;
            }
        }
    }

    fn maybe_prune(&mut self) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let before = now_ms.saturating_sub(self.retention.max_age.as_millis() as u64);
        match self.db.prune(before, self.retention.max_bytes) {
            Ok(0) => {}
            Ok(n) => tracing::info!(lines = n, "pruned old function log lines"),
            Err(e) => tracing::warn!(error = %e, "pruning function logs failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{LINE_VERSION, Stream};
    use crate::store::LogFilter;

    fn line(message: &str) -> LogLine {
        LogLine {
            v: LINE_VERSION,
            // Now: a line from 1970 would be pruned (7-day retention) before the query.
            ts_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            tenant: "default".into(),
            app: "a".into(),
            function: "f".into(),
            invocation_id: "i".into(),
            request_id: "r".into(),
            stream: Stream::Stderr,
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn lines_reach_followers_at_once_and_the_store_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::start(
            LogDb::open(&dir.path().join("logs.redb")).unwrap(),
            Retention::default(),
        )
        .unwrap();
        let mut follower = logs.subscribe();
        logs.log(line("hello"));
        assert_eq!(follower.recv().await.unwrap().message, "hello");
        logs.close();
        let all = LogFilter {
            until_ms: u64::MAX,
            ..LogFilter::default()
        };
        assert_eq!(logs.db().query(&all, 10).unwrap()[0].message, "hello");
        assert_eq!(
            logs.counts(),
            LogCounts {
                accepted: 1,
                written: 1,
                lost: 0
            }
        );
    }
}
