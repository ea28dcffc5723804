//! Where usage records live: the [`RecordStore`] trait the meter writes through, and the
//! embedded redb implementation (`usage.redb` in the data dir).
//!
//! Two tables, written in one transaction per batch:
//!
//! - `usage_batches`: `(latest start_unix_ms in the row, sequence)` → up to [`ROW_RECORDS`]
//!   records of one batch (postcard behind a format byte, see `encoding`; older rows are JSON
//!   arrays of a whole batch). Rows of many records, not one per record: a B-tree insert per
//!   invocation cost more than everything else metering does (BENCHMARKS.md, metering
//!   overhead). Kept for [`UsageDb::RECORD_RETENTION_MS`] (pruned by the writer), for
//!   per-invocation queries, which decode the batches in range.
//! - `usage_hourly`: `(hour_ms, tenant, app, function)` → [`Counters`] as JSON. Kept for good:
//!   reports read these, so a report over a year reads at most hours × functions rows instead
//!   of every invocation.
//!
//! Both tables only ever grow by whole batches: a crash loses the batch being written, never
//! part of one, and never makes a rollup disagree with the records it sums.

use std::path::Path;
use std::sync::Arc;

use nimbus_redb::Reopening;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::carry::HourlySums;
use crate::encoding;
use crate::error::MeteringError;
use crate::record::UsageRecord;
use crate::rollup::{Counters, HOUR_MS, Rollup};

const BATCHES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("usage_batches");
/// Records per row of [`BATCHES`]: rows of ~5 KiB. A whole batch in one row (thousands of
/// records at full load, hundreds of KiB) made redb allocate page buffers that size for every
/// commit, and a lookup of one invocation decode thousands of records.
const ROW_RECORDS: usize = 64;

/// How much earlier than the latest record of its batch a record may have started: the longest
/// invocation (15 min) plus slack. Queries widen their scan by this much.
const BATCH_SPAN_MS: u64 = 16 * 60 * 1000;
const HOURLY: TableDefinition<(u64, &str, &str, &str), &[u8]> =
    TableDefinition::new("usage_hourly");

/// What the meter's writer needs from a store: append a batch atomically. Tests wrap it to
/// inject failures (a full disk).
pub trait RecordStore: Send + 'static {
    /// Appends every record of `batch` (and its rollups) and adds `sums` (usage without
    /// records: provisioned time, invocations whose records were lost) to the rollups, all or
    /// nothing, durably.
    fn append(&mut self, batch: &[UsageRecord], sums: &HourlySums) -> Result<(), MeteringError>;

    /// Drops raw records that started before `before_ms` (rollups stay).
    fn prune(&mut self, before_ms: u64) -> Result<u64, MeteringError>;
}

/// Which rollups or records a query wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Start, inclusive, in ms since the epoch.
    pub since_ms: u64,
    /// End, exclusive, in ms since the epoch (`u64::MAX`: no end).
    pub until_ms: u64,
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Only this function (of any app matching `app`).
    pub function: Option<String>,
}

impl Filter {
    fn matches(&self, tenant: &str, app: &str, function: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
            && self.app.as_deref().is_none_or(|a| a == app)
            && self.function.as_deref().is_none_or(|f| f == function)
    }
}

/// The embedded usage store. Clones share one database, which a write reopens after a failed
/// one (see [`nimbus_redb`]): once a full disk has space again, metering resumes by itself.
#[derive(Clone)]
pub struct UsageDb {
    db: Arc<Reopening<MeteringError>>,
    /// The rows of the batch being appended, encoded back to back. Kept from batch to batch:
    /// a buffer grown afresh for every batch came from new pages each time, which the kernel
    /// zeroed (with the row split, the writer's page zeroing fell from ~1% to ~0.3% of the
    /// process's CPU samples under load; too little to show in req/s).
    scratch: Vec<u8>,
}

impl UsageDb {
    /// How long raw records are kept (rollups are kept for good): 7 days.
    pub const RECORD_RETENTION_MS: u64 = 7 * 24 * HOUR_MS;

    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, MeteringError> {
        Ok(Self {
            db: Arc::new(Reopening::open(path, Self::open_database)?),
            scratch: Vec::new(),
        })
    }

    fn open_database(path: &Path) -> Result<Database, MeteringError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::APPEND_ONLY_CACHE)
            .map_err(|e| MeteringError::open(path, e))?;
        let txn = db.begin_write().map_err(MeteringError::store)?;
        txn.open_table(BATCHES).map_err(MeteringError::store)?;
        txn.open_table(HOURLY).map_err(MeteringError::store)?;
        txn.commit().map_err(MeteringError::store)?;
        Ok(db)
    }

    fn db(&self) -> Result<Arc<Database>, MeteringError> {
        self.db.read(closed)
    }

    fn write<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, MeteringError>,
    ) -> Result<T, MeteringError> {
        self.db.write(op, closed)
    }

    /// Hourly rollups whose hour overlaps `[since_ms, until_ms)` and that match the filter.
    pub fn rollups(&self, filter: &Filter) -> Result<Vec<Rollup>, MeteringError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(MeteringError::store)?;
        let table = txn.open_table(HOURLY).map_err(MeteringError::store)?;
        let first_hour = filter.since_ms - filter.since_ms % HOUR_MS;
        let mut out = Vec::new();
        let range = table
            .range((first_hour, "", "", "")..)
            .map_err(MeteringError::store)?;
        for entry in range {
            let (key, value) = entry.map_err(MeteringError::store)?;
            let (hour_ms, tenant, app, function) = key.value();
            if hour_ms >= filter.until_ms {
                break;
            }
            if !filter.matches(tenant, app, function) {
                continue;
            }
            let counters: Counters =
                serde_json::from_slice(value.value()).map_err(MeteringError::corrupt)?;
            out.push(Rollup {
                hour_ms,
                tenant: tenant.to_owned(),
                app: app.to_owned(),
                function: function.to_owned(),
                counters,
            });
        }
        Ok(out)
    }

    /// Raw records that started in `[since_ms, until_ms)` and match the filter (and, if
    /// given, whose invocation or request id is `id`), oldest first, at most `limit`.
    pub fn records(
        &self,
        filter: &Filter,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, MeteringError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(MeteringError::store)?;
        let table = txn.open_table(BATCHES).map_err(MeteringError::store)?;
        let mut out = Vec::new();
        // A batch is keyed by its latest start: every batch holding a record at or after
        // `since` has a key at or after it, and none whose key is past `until` + the span can
        // hold one before `until`.
        let range = table
            .range((filter.since_ms, 0)..)
            .map_err(MeteringError::store)?;
        let mut stop = filter.until_ms.saturating_add(BATCH_SPAN_MS);
        let by_start = |a: &UsageRecord, b: &UsageRecord| {
            (a.start_unix_ms, &a.request_id).cmp(&(b.start_unix_ms, &b.request_id))
        };
        for entry in range {
            let (key, value) = entry.map_err(MeteringError::store)?;
            if key.value().0 >= stop {
                break;
            }
            if out.len() >= limit {
                // The `limit` earliest so far are final once batches start a span past the
                // last of them.
                out.sort_by(by_start);
                out.truncate(limit);
                if let Some(last) = out.last() {
                    stop = stop.min(last.start_unix_ms.saturating_add(BATCH_SPAN_MS));
                }
                if key.value().0 >= stop {
                    break;
                }
            }
            let batch = encoding::decode(value.value())?;
            out.extend(batch.into_iter().filter(|record| {
                (filter.since_ms..filter.until_ms).contains(&record.start_unix_ms)
                    && filter.matches(&record.tenant, &record.app, &record.function)
                    && id.is_none_or(|id| *record.invocation_id == *id || *record.request_id == *id)
            }));
        }
        out.sort_by(by_start);
        out.truncate(limit);
        Ok(out)
    }
}

impl RecordStore for UsageDb {
    fn append(&mut self, batch: &[UsageRecord], sums: &HourlySums) -> Result<(), MeteringError> {
        // Sum the batch per hour and function first: one read-modify-write per rollup row.
        let mut hourly: std::collections::BTreeMap<(u64, &str, &str, &str), Counters> =
            std::collections::BTreeMap::new();
        for record in batch {
            let hour = record.start_unix_ms - record.start_unix_ms % HOUR_MS;
            hourly
                .entry((hour, &record.tenant, &record.app, &record.function))
                .or_default()
                .add(record);
        }
        for ((hour, tenant, app, function), add) in sums.groups() {
            hourly
                .entry((*hour, tenant, app, function))
                .or_default()
                .merge(add);
        }
        // One row per chunk, keyed by the chunk's latest start (what pruning goes by).
        let mut encoded = std::mem::take(&mut self.scratch);
        encoded.clear();
        let mut rows = Vec::with_capacity(batch.len().div_ceil(ROW_RECORDS));
        for chunk in batch.chunks(ROW_RECORDS) {
            let latest = chunk.iter().map(|r| r.start_unix_ms).max().unwrap_or(0);
            let start = encoded.len();
            encoded = encoding::encode_onto(chunk, encoded)?;
            rows.push((latest, start..encoded.len()));
        }
        if rows.is_empty() && hourly.is_empty() {
            return Ok(());
        }
        let result = self.write(|db| {
            let txn = db.begin_write().map_err(MeteringError::store)?;
            {
                let mut batches = txn.open_table(BATCHES).map_err(MeteringError::store)?;
                for (latest, bytes) in &rows {
                    // Several rows may share their latest start: number them after the last.
                    let seq = batches
                        .range((*latest, 0)..=(*latest, u64::MAX))
                        .map_err(MeteringError::store)?
                        .next_back()
                        .transpose()
                        .map_err(MeteringError::store)?
                        .map_or(0, |(key, _)| key.value().1 + 1);
                    batches
                        .insert((*latest, seq), &encoded[bytes.clone()])
                        .map_err(MeteringError::store)?;
                }
                let mut table = txn.open_table(HOURLY).map_err(MeteringError::store)?;
                for (key, add) in hourly {
                    let mut counters = match table.get(key).map_err(MeteringError::store)? {
                        Some(old) => serde_json::from_slice::<Counters>(old.value())
                            .map_err(MeteringError::corrupt)?,
                        None => Counters::default(),
                    };
                    counters.merge(&add);
                    let json = serde_json::to_vec(&counters).map_err(MeteringError::corrupt)?;
                    table
                        .insert(key, json.as_slice())
                        .map_err(MeteringError::store)?;
                }
            }
            txn.commit().map_err(MeteringError::store)
        });
        self.scratch = encoded;
        result
    }

    fn prune(&mut self, before_ms: u64) -> Result<u64, MeteringError> {
        self.write(|db| {
            let txn = db.begin_write().map_err(MeteringError::store)?;
            let removed = {
                let mut batches = txn.open_table(BATCHES).map_err(MeteringError::store)?;
                // Whole batches whose every record started before `before_ms`.
                let old = batches
                    .extract_from_if((0u64, 0u64)..(before_ms, 0), |_, _| true)
                    .map_err(MeteringError::store)?;
                let mut n = 0;
                for entry in old {
                    let (_, value) = entry.map_err(MeteringError::store)?;
                    n += encoding::decode(value.value())?.len() as u64;
                }
                n
            };
            txn.commit().map_err(MeteringError::store)?;
            Ok(removed)
        })
    }
}

fn closed() -> MeteringError {
    MeteringError::Store("the usage store could not be reopened after a write error".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, RECORD_VERSION, TriggerKind};

    fn record(app: &str, function: &str, start: u64, id: &str) -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: id.into(),
            request_id: id.into(),
            tenant: "default".into(),
            app: app.into(),
            function: function.into(),
            version: 1,
            trigger: TriggerKind::Http,
            start_unix_ms: start,
            duration_us: 1500,
            billed_ms: 2,
            memory_mb: 128,
            peak_memory_bytes: 65536,
            cpu_us: 900,
            bytes_in: 0,
            bytes_out: 18,
            outcome: Outcome::Ok,
            cold_start: false,
        }
    }

    #[test]
    fn batches_roll_up_by_hour_and_function_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.redb");
        let mut db = UsageDb::open(&path).unwrap();
        db.append(
            &[
                record("shop", "api", 10, "a"),
                record("shop", "api", 20, "b"),
                record("shop", "cart", 30, "c"),
            ],
            &HourlySums::default(),
        )
        .unwrap();
        db.append(
            &[record("shop", "api", HOUR_MS + 5, "d")],
            &HourlySums::default(),
        )
        .unwrap();
        drop(db);

        let db = UsageDb::open(&path).unwrap();
        let all = Filter {
            until_ms: u64::MAX,
            ..Filter::default()
        };
        let rollups = db.rollups(&all).unwrap();
        let summary: Vec<_> = rollups
            .iter()
            .map(|r| (r.hour_ms, r.function.as_str(), r.counters.invocations))
            .collect();
        assert_eq!(
            summary,
            [(0, "api", 2), (0, "cart", 1), (HOUR_MS, "api", 1)]
        );
        assert_eq!(rollups[0].counters.mb_ms, 2 * 128 * 2);

        let api_only = Filter {
            function: Some("api".into()),
            since_ms: HOUR_MS,
            ..all.clone()
        };
        assert_eq!(db.rollups(&api_only).unwrap().len(), 1);
        let records = db.records(&all, None, 10).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            db.records(&all, Some("c"), 10).unwrap()[0].function,
            "cart".into()
        );
        assert_eq!(db.records(&all, None, 2).unwrap().len(), 2);
    }

    #[test]
    fn sums_without_records_add_to_the_rollups_of_their_hours() {
        use crate::provisioned::ProvisionedUsage;
        let dir = tempfile::tempdir().unwrap();
        let mut db = UsageDb::open(&dir.path().join("usage.redb")).unwrap();
        let span = ProvisionedUsage {
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            instances: 2,
            memory_mb: 256,
            // The last 10 s of hour 0 and the first 20 s of hour 1.
            from_unix_ms: HOUR_MS - 10_000,
            until_unix_ms: HOUR_MS + 20_000,
        };
        // A span alone (an idle provisioned function), then one with an invocation whose
        // record is in the batch and one whose record was lost (summed only).
        let mut sums = HourlySums::default();
        assert!(sums.add_span(&span));
        db.append(&[], &sums).unwrap();
        assert!(sums.add_record(&record("shop", "api", 20, "lost")));
        db.append(&[record("shop", "api", 10, "a")], &sums).unwrap();
        let all = Filter {
            until_ms: u64::MAX,
            ..Filter::default()
        };
        let summary: Vec<_> = db
            .rollups(&all)
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.hour_ms,
                    r.counters.invocations,
                    r.counters.provisioned_mb_ms,
                )
            })
            .collect();
        let mb_per_ms = 2 * 256;
        assert_eq!(
            summary,
            [
                (0, 2, 2 * mb_per_ms * 10_000),
                (HOUR_MS, 0, 2 * mb_per_ms * 20_000)
            ]
        );
        // Sums have no raw records: only the batch's one is there.
        assert_eq!(db.records(&all, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_large_batch_is_stored_in_rows_and_pruned_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = UsageDb::open(&dir.path().join("usage.redb")).unwrap();
        // 150 records, starting at 1..=150 ms: rows of 64, 64 and 22.
        let batch: Vec<_> = (1..=150)
            .map(|i| record("a", "f", i, &format!("r{i}")))
            .collect();
        db.append(&batch, &HourlySums::default()).unwrap();
        let handle = db.db().unwrap();
        let txn = handle.begin_read().unwrap();
        let keys: Vec<_> = txn
            .open_table(BATCHES)
            .unwrap()
            .iter()
            .unwrap()
            .map(|row| row.unwrap().0.value())
            .collect();
        assert_eq!(keys, [(64, 0), (128, 0), (150, 0)]);
        let all = Filter {
            until_ms: u64::MAX,
            ..Filter::default()
        };
        assert_eq!(db.records(&all, None, 1000).unwrap().len(), 150);
        assert_eq!(db.records(&all, Some("r100"), 10).unwrap().len(), 1);
        // A row goes once every record in it is older than the cut.
        assert_eq!(db.prune(100).unwrap(), 64);
        assert_eq!(db.records(&all, None, 1000).unwrap().len(), 86);
        assert_eq!(db.rollups(&all).unwrap()[0].counters.invocations, 150);
    }

    #[test]
    fn pruning_drops_old_records_and_keeps_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = UsageDb::open(&dir.path().join("usage.redb")).unwrap();
        // Pruning drops whole batches whose every record is older.
        let none = HourlySums::default();
        db.append(&[record("a", "f", 1, "x")], &none).unwrap();
        db.append(&[record("a", "f", 5_000, "y")], &none).unwrap();
        assert_eq!(db.prune(2).unwrap(), 1);
        let all = Filter {
            until_ms: u64::MAX,
            ..Filter::default()
        };
        let left = db.records(&all, None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].request_id, "y".into());
        assert_eq!(db.rollups(&all).unwrap()[0].counters.invocations, 2);
    }
}
