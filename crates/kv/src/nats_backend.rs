//! The NATS JetStream backend: one key-value bucket (history 1) for all stores.
//!
//! NATS keys allow only `[-/_=.A-Za-z0-9]`, so a key is stored as
//! `tenant.store.<base64url(key)>`. NATS 2.9 has no per-key TTL, so values carry the same
//! expiry header as the embedded backend and expired entries read as absent. `increment` and
//! `compare_and_swap` use JetStream's optimistic concurrency (create-if-absent and
//! update-at-revision), retrying `increment` on conflict — exact under concurrency.

use std::time::Duration;

use async_nats::jetstream::kv::{
    Config, CreateErrorKind, Entry, Operation, Store, UpdateErrorKind,
};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::TryStreamExt;

use crate::row::{decode, encode, now_ms};
use crate::{KeyPage, KvBackend, KvError, MAX_VALUE_BYTES, StoreId, check, parse_counter};

/// The NATS JetStream key-value backend.
#[derive(Clone)]
pub struct NatsKv {
    kv: Store,
}

fn backend(e: impl std::fmt::Display) -> KvError {
    KvError::Backend(e.to_string())
}

fn subject_prefix(store: &StoreId) -> String {
    format!("{}.{}.", store.tenant, store.store)
}

fn nats_key(store: &StoreId, key: &str) -> String {
    subject_prefix(store) + &URL_SAFE_NO_PAD.encode(key)
}

/// The live value of an entry, if it is a put that has not expired.
fn live(entry: &Option<Entry>) -> Option<&[u8]> {
    match entry {
        Some(e) if e.operation == Operation::Put => decode(&e.value, now_ms()),
        _ => None,
    }
}

impl NatsKv {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`) and opens (creating) `bucket`.
    pub async fn connect(url: &str, bucket: &str) -> Result<Self, KvError> {
        let client = async_nats::connect(url).await.map_err(backend)?;
        let js = async_nats::jetstream::new(client);
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    max_value_size: i32::try_from(MAX_VALUE_BYTES + 8).unwrap_or(i32::MAX),
                    ..Config::default()
                })
                .await
                .map_err(backend)?,
        };
        Ok(Self { kv })
    }

    async fn entry(&self, key: &str) -> Result<Option<Entry>, KvError> {
        self.kv.entry(key).await.map_err(backend)
    }

    /// Writes `row` if the key is still as read in `entry`. Returns false on a conflict.
    async fn write_if_unchanged(
        &self,
        key: &str,
        entry: &Option<Entry>,
        row: Vec<u8>,
    ) -> Result<bool, KvError> {
        match entry {
            Some(e) if e.operation == Operation::Put => {
                match self.kv.update(key, Bytes::from(row), e.revision).await {
                    Ok(_) => Ok(true),
                    Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(err) => Err(backend(err)),
                }
            }
            _ => match self.kv.create(key, Bytes::from(row)).await {
                Ok(_) => Ok(true),
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                Err(err) => Err(backend(err)),
            },
        }
    }
}

#[async_trait]
impl KvBackend for NatsKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError> {
        check(key, None)?;
        let entry = self.entry(&nats_key(store, key)).await?;
        Ok(live(&entry).map(Bytes::copy_from_slice))
    }

    async fn set(
        &self,
        store: &StoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(&value))?;
        self.kv
            .put(nats_key(store, key), Bytes::from(encode(&value, ttl)))
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let full = nats_key(store, key);
        let existed = live(&self.entry(&full).await?).is_some();
        self.kv.purge(&full).await.map_err(backend)?;
        Ok(existed)
    }

    async fn list_keys(
        &self,
        store: &StoreId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        if let Some(c) = cursor
            && !c.starts_with(prefix)
        {
            return Err(KvError::InvalidCursor);
        }
        let base = subject_prefix(store);
        let all: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        let mut keys: Vec<String> = all
            .iter()
            .filter_map(|k| k.strip_prefix(&base))
            .filter_map(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter_map(|raw| String::from_utf8(raw).ok())
            .filter(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
            .collect();
        keys.sort();
        let limit = limit.max(1);
        let mut page = Vec::new();
        let mut more = false;
        for key in keys {
            // Expired entries are still listed by NATS: skip them.
            if live(&self.entry(&nats_key(store, &key)).await?).is_none() {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(key);
        }
        let cursor = if more { page.last().cloned() } else { None };
        Ok(KeyPage { keys: page, cursor })
    }

    async fn increment(&self, store: &StoreId, key: &str, delta: i64) -> Result<i64, KvError> {
        check(key, None)?;
        let full = nats_key(store, key);
        loop {
            let entry = self.entry(&full).await?;
            let current = match live(&entry) {
                Some(v) => parse_counter(key, v)?,
                None => 0,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
            if self
                .write_if_unchanged(&full, &entry, encode(next.to_string().as_bytes(), None))
                .await?
            {
                return Ok(next);
            }
        }
    }

    async fn compare_and_swap(
        &self,
        store: &StoreId,
        key: &str,
        expected: Option<&[u8]>,
        new: Bytes,
    ) -> Result<bool, KvError> {
        check(key, Some(&new))?;
        let full = nats_key(store, key);
        let entry = self.entry(&full).await?;
        if live(&entry) != expected {
            return Ok(false);
        }
        self.write_if_unchanged(&full, &entry, encode(&new, None))
            .await
    }
}
