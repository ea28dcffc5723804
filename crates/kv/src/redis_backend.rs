//! The Redis backend (the server on 127.0.0.1:6379 in tests).
//!
//! Keys are `nimbus:kv:tenant/store/key`. TTLs use Redis' own expiry (`SET … PX`),
//! `increment` is `INCRBY`, and `compare_and_swap` is a Lua script, so both are exact (Redis
//! runs a script atomically). Listing uses `SCAN MATCH`: no order, and a page may hold a few more
//! keys than asked for (a SCAN batch is never split, so no key is skipped).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{KeyPage, KvBackend, KvError, StoreId, check};

const NAMESPACE: &str = "nimbus:kv:";

const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif (not cur) or cur ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// The Redis key-value backend.
#[derive(Clone)]
pub struct RedisKv {
    conn: ConnectionManager,
    cas: redis::Script,
}

fn backend(e: redis::RedisError) -> KvError {
    KvError::Backend(e.to_string())
}

fn full_key(store: &StoreId, key: &str) -> String {
    format!("{NAMESPACE}{}{key}", store.prefix())
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisKv {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`).
    pub async fn connect(url: &str) -> Result<Self, KvError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new(client).await.map_err(backend)?;
        Ok(Self {
            conn,
            cas: redis::Script::new(CAS),
        })
    }
}

#[async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError> {
        check(key, None)?;
        let value: Option<Vec<u8>> = self
            .conn
            .clone()
            .get(full_key(store, key))
            .await
            .map_err(backend)?;
        Ok(value.map(Bytes::from))
    }

    async fn set(
        &self,
        store: &StoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(&value))?;
        let mut conn = self.conn.clone();
        let full = full_key(store, key);
        match ttl {
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                redis::cmd("SET")
                    .arg(&full)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut conn)
                    .await
            }
            None => conn.set::<_, _, ()>(&full, value.as_ref()).await,
        }
        .map_err(backend)
    }

    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let removed: u64 = self
            .conn
            .clone()
            .del(full_key(store, key))
            .await
            .map_err(backend)?;
        Ok(removed > 0)
    }

    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        self.conn
            .clone()
            .exists(full_key(store, key))
            .await
            .map_err(backend)
    }

    async fn list_keys(
        &self,
        store: &StoreId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let mut scan_cursor: u64 = match cursor {
            Some(c) => c.parse().map_err(|_| KvError::InvalidCursor)?,
            None => 0,
        };
        let base = format!("{NAMESPACE}{}", store.prefix());
        let pattern = format!("{}*", glob_escape(&format!("{base}{prefix}")));
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(scan_cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(limit.clamp(10, 1000))
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&base).map(str::to_owned)),
            );
            scan_cursor = next;
            if scan_cursor == 0 || keys.len() >= limit {
                break;
            }
        }
        Ok(KeyPage {
            keys,
            cursor: (scan_cursor != 0).then(|| scan_cursor.to_string()),
        })
    }

    async fn increment(&self, store: &StoreId, key: &str, delta: i64) -> Result<i64, KvError> {
        check(key, None)?;
        self.conn
            .clone()
            .incr(full_key(store, key), delta)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("overflow") {
                    KvError::Overflow(key.to_owned())
                } else if text.contains("not an integer") {
                    KvError::NotACounter(key.to_owned())
                } else {
                    backend(e)
                }
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
        let mut conn = self.conn.clone();
        let swapped: i64 = self
            .cas
            .key(full_key(store, key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new.as_ref())
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(swapped == 1)
    }
}
