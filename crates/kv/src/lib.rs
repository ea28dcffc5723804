//! The key-value service: what functions reach through `wasi:keyvalue` and users through the
//! REST API (both wired in later), behind one small trait with interchangeable backends.
//!
//! # Layout
//!
//! - [`KvBackend`] (this file): the operations every backend implements — get, set (with TTL),
//!   delete, exists, list keys by prefix with a cursor, atomic increment and compare-and-swap.
//! - [`embedded`]: the default, durable backend on redb under the data dir (every acknowledged
//!   write is committed and fsynced).
//! - [`redis_backend`]: the same on Redis.
//! - [`nats_backend`]: the same on a NATS JetStream key-value bucket.
//! - [`conformance`]: the one suite every backend must pass (`tests/conformance.rs` runs it
//!   against each).
//! - [`error`]: the error type, [`KvError`].
//!
//! Semantics shared by all backends (the conformance suite checks them):
//! - keys are UTF-8, 1..=[`MAX_KEY_BYTES`] bytes; values at most [`MAX_VALUE_BYTES`];
//! - a key with a TTL disappears after it (reads never return an expired value);
//! - counters are stored as decimal ASCII (`"42"`), so `increment` and `get` agree across
//!   backends and a REST client reads a number; `increment` on a missing key starts at 0, on a
//!   non-numeric value fails with [`KvError::NotACounter`];
//! - `compare_and_swap(expected = None)` succeeds only if the key does not exist — exact on all
//!   backends (a redb write transaction; a Lua script on Redis);
//! - `list_keys` returns keys in lexicographic order on the embedded backend; on Redis the order
//!   is unspecified (SCAN), and a key changed during a listing may be missed or repeated; on
//!   NATS each page reads the bucket's whole key list (fine for small stores, O(keys) per page).

pub mod conformance;
pub mod embedded;
pub mod error;
pub mod nats_backend;
pub mod redis_backend;
mod row;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use error::KvError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Which store a key lives in. Stores belong to a tenant (like Cloudflare KV namespaces, not
/// per app): every app of the tenant that declares a store sees the same keys, and the REST API
/// addresses them as `/v1/kv/{store}/{key}`. Every stored key is namespaced by tenant and store
/// so one backend holds them all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreId {
    /// Tenant (`default` until multi-tenancy).
    pub tenant: String,
    /// Store name, as declared in the manifest (validated by `nimbus_manifest`).
    pub store: String,
}

impl StoreId {
    /// A store id; names are validated before they get here.
    pub fn new(tenant: &str, store: &str) -> Self {
        Self {
            tenant: tenant.into(),
            store: store.into(),
        }
    }

    /// The backend-level prefix of this store's keys. `/` cannot appear in tenant or store
    /// names, so prefixes of different stores never overlap.
    pub fn prefix(&self) -> String {
        format!("{}/{}/", self.tenant, self.store)
    }
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in this page (without the store prefix).
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` when the listing is complete.
    pub cursor: Option<String>,
}

/// A key-value backend.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// The value of `key`, if present and not expired.
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError>;
    /// Sets `key` to `value`, expiring after `ttl` if given.
    async fn set(
        &self,
        store: &StoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError>;
    /// Deletes `key`; returns whether it existed.
    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError>;
    /// Whether `key` exists (and has not expired).
    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        Ok(self.get(store, key).await?.is_some())
    }
    /// Up to `limit` keys starting with `prefix`, continuing after `cursor`.
    async fn list_keys(
        &self,
        store: &StoreId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError>;
    /// Atomically adds `delta` to the counter at `key` (missing = 0) and returns the new value.
    async fn increment(&self, store: &StoreId, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Atomically sets `key` to `new` if its current value is `expected` (`None`: absent).
    /// Returns whether it did.
    async fn compare_and_swap(
        &self,
        store: &StoreId,
        key: &str,
        expected: Option<&[u8]>,
        new: Bytes,
    ) -> Result<bool, KvError>;
}

/// Checks a key and value against the limits.
pub fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::InvalidKey(format!(
            "keys must be 1 to {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    if let Some(value) = value
        && value.len() > MAX_VALUE_BYTES
    {
        return Err(KvError::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Parses a stored counter.
pub(crate) fn parse_counter(key: &str, value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| KvError::NotACounter(key.to_owned()))
}
