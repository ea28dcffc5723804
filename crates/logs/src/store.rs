//! The log store: `logs.redb` in the data dir.
//!
//! One row per batch the writer stores (≤ 50 ms of lines), not per line: a request that logs
//! two lines must not cost the machine two B-tree inserts, and the writer shares the CPU with
//! the functions (bench/metering_bench.py). `log_batches`: `(first ts_unix_ms, seq)` → the
//! batch's lines as a JSON array, sorted by time; `log_batch_sizes`: the same key → `(last
//! ts_unix_ms, bytes)`, so retention never decodes a batch; `log_meta`: the byte total, the
//! next sequence number and the widest time span of any batch (how far before a query's start
//! a batch holding matching lines can begin). Retention drops whole batches, oldest first.
//!
//! Stores written before batching (one row per line, `log_lines`) are converted on open.

use std::path::Path;
use std::sync::Arc;

use nimbus_redb::Reopening;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::LogError;
use crate::line::LogLine;

type Key = (u64, u64);
const BATCHES: TableDefinition<Key, &[u8]> = TableDefinition::new("log_batches");
const SIZES: TableDefinition<Key, (u64, u64)> = TableDefinition::new("log_batch_sizes");
const META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
/// The per-line table of stores written before batching.
const OLD_LINES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("log_lines");
const BYTES: &str = "bytes";
const NEXT_SEQ: &str = "next_seq";
const MAX_SPAN: &str = "max_span_ms";
/// Lines per batch when converting an old store.
const CONVERT_BATCH: usize = 1000;

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
        self.app.as_deref().is_none_or(|a| a == &*line.app)
            && self
                .function
                .as_deref()
                .is_none_or(|f| f == &*line.function)
            && self
                .invocation
                .as_deref()
                .is_none_or(|id| id == &*line.invocation_id || id == &*line.request_id)
    }

    fn in_range(&self, line: &LogLine) -> bool {
        (self.since_ms..self.until_ms).contains(&line.ts_unix_ms)
    }
}

/// The embedded log store. Clones share one database, which a write reopens after a failed
/// one (see [`nimbus_redb`]): once a full disk has space again, lines are stored again.
#[derive(Clone)]
pub struct LogDb {
    db: Arc<Reopening<LogError>>,
}

fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, LogError> {
    Ok(meta
        .get(key)
        .map_err(LogError::store)?
        .map_or(0, |v| v.value()))
}

impl LogDb {
    /// Opens (or creates) the store at `path`, converting a per-line store to batches.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let store = Self {
            db: Arc::new(Reopening::open(path, Self::open_database)?),
        };
        store.convert_per_line_rows()?;
        Ok(store)
    }

    fn open_database(path: &Path) -> Result<Database, LogError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::APPEND_ONLY_CACHE)
            .map_err(|e| LogError::Store(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(LogError::store)?;
        txn.open_table(BATCHES).map_err(LogError::store)?;
        txn.open_table(SIZES).map_err(LogError::store)?;
        txn.open_table(META).map_err(LogError::store)?;
        txn.commit().map_err(LogError::store)?;
        Ok(db)
    }

    fn db(&self) -> Result<Arc<Database>, LogError> {
        self.db.read(closed)
    }

    /// Moves the rows of a store written before batching into batches, in one transaction.
    fn convert_per_line_rows(&self) -> Result<(), LogError> {
        let old: Vec<LogLine> = {
            let txn = self.db()?.begin_read().map_err(LogError::store)?;
            let table = match txn.open_table(OLD_LINES) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(LogError::store(e)),
            };
            let mut lines = Vec::new();
            for entry in table.iter().map_err(LogError::store)? {
                let (_, value) = entry.map_err(LogError::store)?;
                lines.push(serde_json::from_slice(value.value()).map_err(LogError::corrupt)?);
            }
            lines
        };
        let txn = self.db()?.begin_write().map_err(LogError::store)?;
        {
            let mut meta = txn.open_table(META).map_err(LogError::store)?;
            meta.insert(BYTES, 0).map_err(LogError::store)?;
        }
        for chunk in old.chunks(CONVERT_BATCH) {
            Self::append_in(&txn, chunk)?;
        }
        txn.delete_table(OLD_LINES).map_err(LogError::store)?;
        txn.commit().map_err(LogError::store)?;
        if !old.is_empty() {
            tracing::info!(
                lines = old.len(),
                "converted the function log store to batches"
            );
        }
        Ok(())
    }

    /// Appends a batch of lines as one row, all or nothing.
    pub fn append(&self, batch: &[LogLine]) -> Result<(), LogError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db.write(
            |db| {
                let txn = db.begin_write().map_err(LogError::store)?;
                Self::append_in(&txn, batch)?;
                txn.commit().map_err(LogError::store)
            },
            closed,
        )
    }

    fn append_in(txn: &redb::WriteTransaction, batch: &[LogLine]) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (
            batch.iter().map(|l| l.ts_unix_ms).min(),
            batch.iter().map(|l| l.ts_unix_ms).max(),
        ) else {
            return Ok(());
        };
        // Lines of one batch come from many threads: sorted, a query can walk them newest
        // first.
        let mut sorted: Vec<&LogLine> = batch.iter().collect();
        sorted.sort_by_key(|l| l.ts_unix_ms);
        let bytes: u64 = batch.iter().map(LogLine::size).sum();
        let json = serde_json::to_vec(&sorted).map_err(LogError::corrupt)?;
        let mut meta = txn.open_table(META).map_err(LogError::store)?;
        let seq = meta_value(&meta, NEXT_SEQ)?;
        let total = meta_value(&meta, BYTES)?;
        let span = meta_value(&meta, MAX_SPAN)?;
        let key = (first, seq);
        txn.open_table(BATCHES)
            .map_err(LogError::store)?
            .insert(key, json.as_slice())
            .map_err(LogError::store)?;
        txn.open_table(SIZES)
            .map_err(LogError::store)?
            .insert(key, (last, bytes))
            .map_err(LogError::store)?;
        meta.insert(NEXT_SEQ, seq + 1).map_err(LogError::store)?;
        meta.insert(BYTES, total + bytes).map_err(LogError::store)?;
        meta.insert(MAX_SPAN, span.max(last - first))
            .map_err(LogError::store)?;
        Ok(())
    }

    /// The newest `limit` lines in the filter's range that match it, oldest first.
    pub fn query(&self, filter: &LogFilter, limit: usize) -> Result<Vec<LogLine>, LogError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(LogError::store)?;
        let span = meta_value(&txn.open_table(META).map_err(LogError::store)?, MAX_SPAN)?;
        let batches = txn.open_table(BATCHES).map_err(LogError::store)?;
        let mut out = Vec::new();
        // A batch that starts up to `span` before the range can still hold lines in it.
        let from = filter.since_ms.saturating_sub(span);
        let range = batches
            .range((from, 0)..(filter.until_ms, 0))
            .map_err(LogError::store)?;
        'batches: for entry in range.rev() {
            let (_, value) = entry.map_err(LogError::store)?;
            let lines: Vec<LogLine> =
                serde_json::from_slice(value.value()).map_err(LogError::corrupt)?;
            for line in lines.into_iter().rev() {
                if out.len() >= limit {
                    break 'batches;
                }
                if filter.in_range(&line) && filter.matches(&line) {
                    out.push(line);
                }
            }
        }
        out.reverse();
        // Batches may overlap in time (one starts before the previous ends); the sort is
        // stable, so lines of the same millisecond keep their order.
        out.sort_by_key(|l| l.ts_unix_ms);
        Ok(out)
    }

    /// Bytes of lines kept (as [`LogLine::size`] counts them).
    pub fn bytes(&self) -> Result<u64, LogError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(LogError::store)?;
        meta_value(&txn.open_table(META).map_err(LogError::store)?, BYTES)
    }

    /// Drops the batches whose lines are all older than `before_ms`, then the oldest ones until
    /// at most `max_bytes` are kept. Returns how many lines went.
    pub fn prune(&self, before_ms: u64, max_bytes: u64) -> Result<u64, LogError> {
        self.db
            .write(|db| Self::prune_in(db, before_ms, max_bytes), closed)
    }

    fn prune_in(db: &Database, before_ms: u64, max_bytes: u64) -> Result<u64, LogError> {
        let txn = db.begin_write().map_err(LogError::store)?;
        let removed = {
            let mut meta = txn.open_table(META).map_err(LogError::store)?;
            let mut bytes = meta_value(&meta, BYTES)?;
            let mut sizes = txn.open_table(SIZES).map_err(LogError::store)?;
            let mut batches = txn.open_table(BATCHES).map_err(LogError::store)?;
            let mut doomed = Vec::new();
            for entry in sizes.range::<Key>(..).map_err(LogError::store)? {
                let (key, value) = entry.map_err(LogError::store)?;
                let (last, batch_bytes) = value.value();
                if last >= before_ms && bytes <= max_bytes {
                    break;
                }
                bytes = bytes.saturating_sub(batch_bytes);
                doomed.push(key.value());
            }
            let mut lines = 0u64;
            for key in &doomed {
                sizes.remove(key).map_err(LogError::store)?;
                if let Some(row) = batches.remove(key).map_err(LogError::store)? {
                    lines += count_lines(row.value())?;
                }
            }
            meta.insert(BYTES, bytes).map_err(LogError::store)?;
            lines
        };
        txn.commit().map_err(LogError::store)?;
        Ok(removed)
    }
}

fn closed() -> LogError {
    LogError::Store("the log store could not be reopened after a write error".into())
}

/// Lines in a stored batch.
fn count_lines(json: &[u8]) -> Result<u64, LogError> {
    let lines: Vec<serde::de::IgnoredAny> =
        serde_json::from_slice(json).map_err(LogError::corrupt)?;
    Ok(lines.len() as u64)
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
            request_id: format!("{invocation}-r").into(),
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
        // Ten batches of ten lines, ts 0..100, as the writer would store them.
        let lines: Vec<LogLine> = (0..100)
            .map(|i| line(i, "api", "i", &"x".repeat(100)))
            .collect();
        for batch in lines.chunks(10) {
            db.append(batch).unwrap();
        }
        let each = lines[0].size();
        assert_eq!(db.bytes().unwrap(), 100 * each);
        // Age: whole batches whose lines are all older go (ts 0..10 and 10..20; the batch
        // holding ts 25 stays whole).
        assert_eq!(db.prune(25, u64::MAX).unwrap(), 20);
        // Size: keep at most 55 lines' worth; the oldest batches go first.
        assert_eq!(db.prune(0, 55 * each).unwrap(), 30);
        let left = db.query(&all(), 1000).unwrap();
        assert_eq!(left.len(), 50);
        assert_eq!(left[0].ts_unix_ms, 50);
        assert_eq!(db.bytes().unwrap(), 50 * each);
    }

    #[test]
    fn a_batch_that_starts_before_the_range_still_answers_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = LogDb::open(&dir.path().join("logs.redb")).unwrap();
        // Written out of order by two threads, stored as one batch spanning ts 100..160.
        db.append(&[
            line(160, "api", "i", "late"),
            line(100, "api", "i", "early"),
        ])
        .unwrap();
        db.append(&[line(170, "api", "i", "next")]).unwrap();
        let window = |since_ms, until_ms| LogFilter {
            since_ms,
            until_ms,
            ..all()
        };
        let text = |f: LogFilter| -> Vec<String> {
            db.query(&f, 10)
                .unwrap()
                .into_iter()
                .map(|l| l.message)
                .collect()
        };
        assert_eq!(text(window(150, 165)), ["late"]);
        assert_eq!(text(window(0, 1000)), ["early", "late", "next"]);
        assert_eq!(text(window(101, 160)), Vec::<String>::new());
    }

    #[test]
    fn a_per_line_store_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut old = txn.open_table(OLD_LINES).unwrap();
                for i in 0..2500u64 {
                    let json = serde_json::to_vec(&line(i, "api", "i", &format!("m{i}"))).unwrap();
                    old.insert((i, i), json.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let db = LogDb::open(&path).unwrap();
        let lines = db.query(&all(), 10_000).unwrap();
        assert_eq!(lines.len(), 2500);
        assert_eq!(lines[2499].message, "m2499");
        let bytes: u64 = lines.iter().map(LogLine::size).sum();
        assert_eq!(db.bytes().unwrap(), bytes);
        drop(db);
        // Converted once: reopening finds nothing more to convert and loses nothing.
        let db = LogDb::open(&path).unwrap();
        assert_eq!(db.query(&all(), 10_000).unwrap().len(), 2500);
    }
}
