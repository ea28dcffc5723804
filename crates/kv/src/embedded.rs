//! The embedded backend: one redb table under the data dir.
//!
//! Row: key `tenant/store/key` → value `[expires_at_ms: u64 LE][bytes]` (0 = never).
//! Expired rows are invisible to every read and removed when next written.
//!
//! **Reads** run inline on the caller's task: a redb read transaction on a warm page cache is a
//! few microseconds, far less than a hop to the blocking pool would cost.
//!
//! **Writes** go through one writer thread that does *group commit*: it takes every write that
//! is waiting, applies them in arrival order inside one redb write transaction, commits once
//! (fsync), and only then acknowledges each. So every acknowledged write survives kill -9, one
//! fsync is shared by all concurrent writers (throughput grows with concurrency instead of being
//! capped at one write per fsync), and because writes are applied one after another,
//! `increment` and `compare_and_swap` stay exact.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::row::{decode, encode, now_ms};
use crate::{KeyPage, KvBackend, KvError, StoreId, check, parse_counter};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// Most writes folded into one transaction.
const MAX_GROUP: usize = 512;

/// The embedded key-value backend. Cheap to clone; the database closes when the last clone
/// is dropped (after the writer thread has finished what was queued).
#[derive(Clone)]
pub struct EmbeddedKv {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writer: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop; joining it means the file is closed when
        // the drop returns, so the same path can be opened again right away.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

/// What an update computes from the live value: the new row (`None`: leave the key alone)
/// and the caller's result.
type UpdateFn =
    Box<dyn FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, Outcome), KvError> + Send>;

/// One queued write.
struct Job {
    key: String,
    action: Action,
    reply: oneshot::Sender<Result<Outcome, KvError>>,
}

enum Action {
    Update(UpdateFn),
    Remove,
}

/// The result of one write, typed back by the caller.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Done,
    Flag(bool),
    Number(i64),
}

impl EmbeddedKv {
    /// Opens (creating) the store file and starts its writer thread, which ends when the last
    /// clone of this handle is dropped.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::HOT_READ_CACHE).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(KV).map_err(backend)?;
        txn.commit().map_err(backend)?;
        let db = Arc::new(db);
        let (writer, jobs) = mpsc::unbounded_channel();
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("nimbus-kv-writer".into())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| KvError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer: Some(writer),
                thread: Some(thread),
            }),
        })
    }

    fn db(&self) -> &Database {
        &self.inner.db
    }

    async fn write(&self, key: String, action: Action) -> Result<Outcome, KvError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .as_ref()
            .ok_or_else(|| KvError::Backend("the writer thread has stopped".into()))?
            .send(Job { key, action, reply })
            .map_err(|_| KvError::Backend("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| KvError::Backend("the writer thread has stopped".into()))?
    }

    /// Runs `f` on the current live value of `key` in the writer's transaction.
    async fn update(
        &self,
        full: String,
        f: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, Outcome), KvError> + Send + 'static,
    ) -> Result<Outcome, KvError> {
        self.write(full, Action::Update(Box::new(f))).await
    }
}

/// The writer thread: drain what is queued, apply it in one transaction, commit, answer.
fn write_loop(db: &Database, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (outcomes, replies) = apply_group(db, group);
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have gone away; its write is committed all the same.
            let _ = reply.send(outcome);
        }
    }
}

/// Applies `group` in order in one transaction. If the transaction itself fails, every job
/// gets that error (none of them was written); an op-level error (say, `NotACounter`) fails
/// only its own job.
#[allow(clippy::type_complexity)]
fn apply_group(
    db: &Database,
    group: Vec<Job>,
) -> (
    Vec<Result<Outcome, KvError>>,
    Vec<oneshot::Sender<Result<Outcome, KvError>>>,
) {
    let mut replies = Vec::with_capacity(group.len());
    let mut actions = Vec::with_capacity(group.len());
    for job in group {
        replies.push(job.reply);
        actions.push((job.key, job.action));
    }
    let n = replies.len();
    let run = || -> Result<Vec<Result<Outcome, KvError>>, KvError> {
        let txn = db.begin_write().map_err(backend)?;
        let mut outcomes = Vec::with_capacity(n);
        {
            let mut table = txn.open_table(KV).map_err(backend)?;
            let now = now_ms();
            for (key, action) in actions {
                let outcome = match action {
                    Action::Remove => {
                        let old = table.remove(key.as_str()).map_err(backend)?;
                        Ok(Outcome::Flag(
                            old.is_some_and(|row| decode(row.value(), now).is_some()),
                        ))
                    }
                    Action::Update(f) => {
                        let current = table.get(key.as_str()).map_err(backend)?;
                        let live = current.as_ref().and_then(|row| decode(row.value(), now));
                        let computed = f(live);
                        drop(current);
                        match computed {
                            Ok((Some(row), outcome)) => {
                                table
                                    .insert(key.as_str(), row.as_slice())
                                    .map_err(backend)?;
                                Ok(outcome)
                            }
                            Ok((None, outcome)) => Ok(outcome),
                            Err(e) => Err(e),
                        }
                    }
                };
                outcomes.push(outcome);
            }
        }
        txn.commit().map_err(backend)?;
        Ok(outcomes)
    };
    match run() {
        Ok(outcomes) => (outcomes, replies),
        Err(e) => {
            let message = e.to_string();
            let outcomes = (0..n)
                .map(|_| Err(KvError::Backend(message.clone())))
                .collect();
            (outcomes, replies)
        }
    }
}

fn unexpected(outcome: Outcome) -> KvError {
    KvError::Backend(format!("internal: unexpected write outcome {outcome:?}"))
}

#[async_trait]
impl KvBackend for EmbeddedKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError> {
        check(key, None)?;
        let full = store.prefix() + key;
        let txn = self.db().begin_read().map_err(backend)?;
        let table = txn.open_table(KV).map_err(backend)?;
        let row = table.get(full.as_str()).map_err(backend)?;
        Ok(row.and_then(|r| decode(r.value(), now_ms()).map(Bytes::copy_from_slice)))
    }

    async fn set(
        &self,
        store: &StoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(&value))?;
        let row = encode(&value, ttl);
        self.update(store.prefix() + key, move |_| {
            Ok((Some(row), Outcome::Done))
        })
        .await
        .map(drop)
    }

    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        match self.write(store.prefix() + key, Action::Remove).await? {
            Outcome::Flag(existed) => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    async fn list_keys(
        &self,
        store: &StoreId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let base = store.prefix();
        let start = match cursor {
            Some(c) if !c.starts_with(prefix) => return Err(KvError::InvalidCursor),
            Some(c) => Bound::Excluded(format!("{base}{c}")),
            None => Bound::Included(format!("{base}{prefix}")),
        };
        let wanted = format!("{base}{prefix}");
        let limit = limit.max(1);
        {
            let txn = self.db().begin_read().map_err(backend)?;
            let table = txn.open_table(KV).map_err(backend)?;
            let range = match &start {
                Bound::Included(s) => table.range::<&str>(s.as_str()..),
                Bound::Excluded(s) => {
                    table.range::<&str>((Bound::Excluded(s.as_str()), Bound::Unbounded))
                }
                Bound::Unbounded => table.range::<&str>(..),
            }
            .map_err(backend)?;
            let now = now_ms();
            let mut keys = Vec::new();
            let mut more = false;
            for entry in range {
                let (k, v) = entry.map_err(backend)?;
                let k = k.value();
                if !k.starts_with(&wanted) {
                    break;
                }
                if decode(v.value(), now).is_none() {
                    continue;
                }
                if keys.len() == limit {
                    more = true;
                    break;
                }
                keys.push(k[base.len()..].to_owned());
            }
            let cursor = if more { keys.last().cloned() } else { None };
            Ok(KeyPage { keys, cursor })
        }
    }

    async fn increment(&self, store: &StoreId, key: &str, delta: i64) -> Result<i64, KvError> {
        check(key, None)?;
        let name = key.to_owned();
        self.update(store.prefix() + key, move |live| {
            let current = match live {
                Some(v) => parse_counter(&name, v)?,
                None => 0,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(name.clone()))?;
            Ok((
                Some(encode(next.to_string().as_bytes(), None)),
                Outcome::Number(next),
            ))
        })
        .await
        .and_then(|outcome| match outcome {
            Outcome::Number(n) => Ok(n),
            other => Err(unexpected(other)),
        })
    }

    async fn compare_and_swap(
        &self,
        store: &StoreId,
        key: &str,
        expected: Option<&[u8]>,
        new: Bytes,
    ) -> Result<bool, KvError> {
        check(key, Some(&new))?;
        let expected = expected.map(<[u8]>::to_vec);
        self.update(store.prefix() + key, move |live| {
            if live != expected.as_deref() {
                return Ok((None, Outcome::Flag(false)));
            }
            Ok((Some(encode(&new, None)), Outcome::Flag(true)))
        })
        .await
        .and_then(|outcome| match outcome {
            Outcome::Flag(swapped) => Ok(swapped),
            other => Err(unexpected(other)),
        })
    }
}
