//! The log sink: lines go into a bounded queue (never blocking the guest), a writer thread
//! (a [`nimbus_redb::Batcher`]) stores them in batches and applies retention, and live
//! followers get each line as it comes.
//!
//! A line is durable at most 50 ms plus a commit after it was written; followers see it at
//! once (before it is stored).

use std::sync::Arc;
use std::time::Duration;

use nimbus_redb::{BatchConfig, BatchStore, Batcher};
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
    /// Lines lost (a full queue or a failed write).
    pub lost: u64,
}

/// The log sink over a [`LogDb`].
pub struct Logs {
    batcher: Batcher<LogLine>,
    live: broadcast::Sender<Arc<LogLine>>,
    db: LogDb,
}

/// The writer's side: the store and its retention.
struct Writing {
    db: LogDb,
    retention: Retention,
}

impl BatchStore<LogLine> for Writing {
    type Error = LogError;

    fn append(&mut self, batch: &[LogLine]) -> Result<(), LogError> {
        self.db.append(batch)
    }

    fn prune(&mut self, now_ms: u64) -> Result<u64, LogError> {
        let before = now_ms.saturating_sub(self.retention.max_age.as_millis() as u64);
        self.db.prune(before, self.retention.max_bytes)
    }
}

impl Logs {
    /// Starts the writer thread over `db`.
    pub fn start(db: LogDb, retention: Retention) -> Result<Self, LogError> {
        let writing = Writing {
            db: db.clone(),
            retention,
        };
        let config = BatchConfig {
            thread: "nimbus-logs",
            what: "function log lines",
            on_failure: "lines are dropped until the store recovers",
            flush_every: FLUSH_INTERVAL,
            capacity: CHANNEL_CAPACITY,
            // One: an invocation's lines must stay in order, and its task may move between
            // worker threads.
            shards: 1,
            prune_every: PRUNE_EVERY,
        };
        let batcher = Batcher::start(writing, config)
            .map_err(|e| LogError::Store(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            batcher,
            live: broadcast::channel(FOLLOW_BUFFER).0,
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
        let c = self.batcher.counts();
        LogCounts {
            accepted: c.accepted,
            written: c.written,
            lost: c.lost,
        }
    }

    /// Stores what is queued and stops the writer; later lines are counted as lost.
    pub fn close(&self) {
        self.batcher.close();
    }
}

impl LogSink for Logs {
    fn log(&self, line: LogLine) {
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(Arc::new(line.clone()));
        }
        // A line the queue refuses is counted lost (`counts`).
        let _ = self.batcher.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{LINE_VERSION, Stream};
    use crate::store::LogFilter;
    use std::time::SystemTime;

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
