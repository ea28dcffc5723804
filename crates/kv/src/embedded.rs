//! The embedded backend: one redb table under the data dir.
//!
//! Row: key `tenant/app/store/key` → value `[expires_at_ms: u64 LE][bytes]` (0 = never).
//! Expired rows are invisible to every read and removed when next written. Each write is one
//! redb write transaction, committed with fsync before the call returns, so an acknowledged
//! write survives kill -9; transactions are serialised, which is what makes `increment` and
//! `compare_and_swap` exact.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::row::{decode, encode, now_ms};
use crate::{KeyPage, KvBackend, KvError, StoreId, check, parse_counter};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// The embedded key-value backend.
#[derive(Clone)]
pub struct EmbeddedKv {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

impl EmbeddedKv {
    /// Opens (creating) the store file.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let db = Database::create(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(KV).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }

    /// Runs `f` on the current live value of `key` inside one write transaction; `f` returns
    /// the new row (or `None` to leave it) and a result.
    async fn update<T: Send + 'static>(
        &self,
        full: String,
        f: impl FnOnce(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T), KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let result = {
                let mut table = txn.open_table(KV).map_err(backend)?;
                let current = table.get(full.as_str()).map_err(backend)?;
                let live = current
                    .as_ref()
                    .and_then(|row| decode(row.value(), now_ms()));
                let (row, result) = f(live)?;
                drop(current);
                if let Some(row) = row {
                    table
                        .insert(full.as_str(), row.as_slice())
                        .map_err(backend)?;
                }
                result
            };
            txn.commit().map_err(backend)?;
            Ok(result)
        })
        .await
    }
}

#[async_trait]
impl KvBackend for EmbeddedKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError> {
        check(key, None)?;
        let full = store.prefix() + key;
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(KV).map_err(backend)?;
            let row = table.get(full.as_str()).map_err(backend)?;
            Ok(row.and_then(|r| decode(r.value(), now_ms()).map(Bytes::copy_from_slice)))
        })
        .await
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
        self.update(store.prefix() + key, move |_| Ok((Some(row), ())))
            .await
    }

    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let full = store.prefix() + key;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut table = txn.open_table(KV).map_err(backend)?;
                let old = table.remove(full.as_str()).map_err(backend)?;
                old.is_some_and(|row| decode(row.value(), now_ms()).is_some())
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
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
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
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
        })
        .await
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
            Ok((Some(encode(next.to_string().as_bytes(), None)), next))
        })
        .await
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
                return Ok((None, false));
            }
            Ok((Some(encode(&new, None)), true))
        })
        .await
    }
}
