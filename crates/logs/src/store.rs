//! The log store: `logs.redb` in the data dir.
//!
//! `log_lines`: `(ts_unix_ms, seq)` → the line as JSON; `log_meta`: the running byte total and
//! the next sequence number. Lines are appended in batches (one transaction each); retention
//! drops the oldest lines past an age and past a total size.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::LogError;
use crate::line::LogLine;

const LINES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("log_lines");
const META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
const BYTES: &str = "bytes";
const NEXT_SEQ: &str = "next_seq";

/// Which lines a query wants.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// From (inclusive), ms since the epoch.
    pub since_ms: u64,
    /// To (exclusive), ms since the epoch.
    pub until_ms: u64,
    /// Only this app.
    pub app: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only the lines of this invocation (or of the run with this request id).
    pub invocation: Option<String>,
}

impl LogFilter {
    /// Whether `line` passes the filter (its time aside).
    pub fn matches(&self, line: &LogLine) -> bool {
        self.app.as_deref().is_none_or(|a| a == line.app)
            && self.function.as_deref().is_none_or(|f| f == line.function)
            && self
                .invocation
                .as_deref()
                .is_none_or(|id| id == line.invocation_id || id == line.request_id)
    }
}

/// The embedded log store.
#[derive(Clone)]
pub struct LogDb {
    db: Arc<Database>,
}

impl LogDb {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let db = Database::create(path)
            .map_err(|e| LogError::Store(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(LogError::store)?;
        txn.open_table(LINES).map_err(LogError::store)?;
        txn.open_table(META).map_err(LogError::store)?;
        txn.commit().map_err(LogError::store)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Appends a batch of lines, all or nothing.
    pub fn append(&self, batch: &[LogLine]) -> Result<(), LogError> {
        let txn = self.db.begin_write().map_err(LogError::store)?;
        {
            let mut meta = txn.open_table(META).map_err(LogError::store)?;
            let get = |meta: &redb::Table<&str, u64>, key| -> Result<u64, LogError> {
                Ok(meta
                    .get(key)
                    .map_err(LogError::store)?
                    .map_or(0, |v| v.value()))
            };
            let mut seq = get(&meta, NEXT_SEQ)?;
            let mut bytes = get(&meta, BYTES)?;
            let mut lines = txn.open_table(LINES).map_err(LogError::store)?;
            for line in batch {
                let json = serde_json::to_vec(line).map_err(LogError::corrupt)?;
                lines
                    .insert((line.ts_unix_ms, seq), json.as_slice())
                    .map_err(LogError::store)?;
                seq += 1;
                bytes += line.size();
            }
            meta.insert(NEXT_SEQ, seq).map_err(LogError::store)?;
            meta.insert(BYTES, bytes).map_err(LogError::store)?;
        }
        txn.commit().map_err(LogError::store)
    }

    /// The newest `limit` lines in the filter's range that match it, oldest first.
    pub fn query(&self, filter: &LogFilter, limit: usize) -> Result<Vec<LogLine>, LogError> {
        let txn = self.db.begin_read().map_err(LogError::store)?;
        let lines = txn.open_table(LINES).map_err(LogError::store)?;
        let mut out = Vec::new();
        let range = lines
            .range((filter.since_ms, 0)..(filter.until_ms, 0))
            .map_err(LogError::store)?;
        for entry in range.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, value) = entry.map_err(LogError::store)?;
            let line: LogLine = serde_json::from_slice(value.value()).map_err(LogError::corrupt)?;
            if filter.matches(&line) {
                out.push(line);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Bytes of lines kept (as [`LogLine::size`] counts them).
    pub fn bytes(&self) -> Result<u64, LogError> {
        let txn = self.db.begin_read().map_err(LogError::store)?;
        let meta = txn.open_table(META).map_err(LogError::store)?;
        Ok(meta
            .get(BYTES)
            .map_err(LogError::store)?
            .map_or(0, |v| v.value()))
    }

    /// Drops lines older than `before_ms`, then the oldest ones until at most `max_bytes` are
    /// kept. Returns how many lines went.
    pub fn prune(&self, before_ms: u64, max_bytes: u64) -> Result<u64, LogError> {
        let txn = self.db.begin_write().map_err(LogError::store)?;
        let removed = {
            let mut meta = txn.open_table(META).map_err(LogError::store)?;
            let mut bytes = meta
                .get(BYTES)
                .map_err(LogError::store)?
                .map_or(0, |v| v.value());
            let mut lines = txn.open_table(LINES).map_err(LogError::store)?;
            let mut doomed = Vec::new();
            for entry in lines.range::<(u64, u64)>(..).map_err(LogError::store)? {
                let (key, value) = entry.map_err(LogError::store)?;
                let (ts, seq) = key.value();
                if ts >= before_ms && bytes <= max_bytes {
                    break;
                }
                let line: LogLine =
                    serde_json::from_slice(value.value()).map_err(LogError::corrupt)?;
                bytes = bytes.saturating_sub(line.size());
                doomed.push((ts, seq));
            }
            for key in &doomed {
                lines.remove(key).map_err(LogError::store)?;
            }
            meta.insert(BYTES, bytes).map_err(LogError::store)?;
            doomed.len() as u64
        };
        txn.commit().map_err(LogError::store)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{LINE_VERSION, Stream};

    pub(crate) fn line(ts: u64, function: &str, invocation: &str, message: &str) -> LogLine {
        LogLine {
            v: LINE_VERSION,
            ts_unix_ms: ts,
            tenant: "default".into(),
            app: "shop".into(),
            function: function.into(),
            invocation_id: invocation.into(),
            request_id: format!("{invocation}-r"),
            stream: Stream::Stdout,
            message: message.into(),
        }
    }

    fn all() -> LogFilter {
        LogFilter {
            until_ms: u64::MAX,
            ..LogFilter::default()
        }
    }

    #[test]
    fn queries_filter_and_return_the_newest_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.redb");
        let db = LogDb::open(&path).unwrap();
        db.append(&[line(1, "api", "i1", "one"), line(2, "cart", "i2", "two")])
            .unwrap();
        db.append(&[line(3, "api", "i3", "three"), line(3, "api", "i3", "four")])
            .unwrap();
        drop(db);
        let db = LogDb::open(&path).unwrap();
        let text =
            |lines: Vec<LogLine>| -> Vec<String> { lines.into_iter().map(|l| l.message).collect() };
        assert_eq!(
            text(db.query(&all(), 10).unwrap()),
            ["one", "two", "three", "four"]
        );
        assert_eq!(text(db.query(&all(), 2).unwrap()), ["three", "four"]);
        let api = LogFilter {
            function: Some("api".into()),
            ..all()
        };
        assert_eq!(text(db.query(&api, 10).unwrap()), ["one", "three", "four"]);
        let one = LogFilter {
            invocation: Some("i3-r".into()),
            ..all()
        };
        assert_eq!(text(db.query(&one, 10).unwrap()), ["three", "four"]);
        let recent = LogFilter {
            since_ms: 2,
            until_ms: 3,
            ..all()
        };
        assert_eq!(text(db.query(&recent, 10).unwrap()), ["two"]);
    }

    #[test]
    fn retention_drops_the_oldest_by_age_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(&dir.path().join("logs.redb")).unwrap();
        let batch: Vec<LogLine> = (0..100)
            .map(|i| line(i, "api", "i", &"x".repeat(100)))
            .collect();
        db.append(&batch).unwrap();
        let each = batch[0].size();
        assert_eq!(db.bytes().unwrap(), 100 * each);
        // Age: everything before ts 10 goes.
        assert_eq!(db.prune(10, u64::MAX).unwrap(), 10);
        // Size: keep at most 50 lines' worth; the oldest go first.
        assert_eq!(db.prune(0, 50 * each).unwrap(), 40);
        let left = db.query(&all(), 1000).unwrap();
        assert_eq!(left.len(), 50);
        assert_eq!(left[0].ts_unix_ms, 50);
        assert_eq!(db.bytes().unwrap(), 50 * each);
    }
}
