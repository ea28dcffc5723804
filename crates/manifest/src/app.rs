//! The typed, validated application model that the rest of Nimbus consumes.
//!
//! Everything here has passed validation and has its defaults filled in: a consumer never has to
//! re-check a name, re-parse a route or guess a default.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::outbound::OutboundHost;
use crate::route::Route;

/// A parsed and validated `nimbus.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// The app's name: 1–63 characters of `a-z`, `0-9` and `-`, starting with a letter.
    pub name: String,
    /// Free-form description, if given.
    pub description: Option<String>,
    /// The app's functions, in manifest order; names are unique. Never empty.
    pub functions: Vec<Function>,
}

/// One function: a WebAssembly HTTP component plus how it is reached and what it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Unique within the app; same rules as the app name.
    pub name: String,
    /// Path of the `.wasm` component as written, relative to the manifest's directory. Known to
    /// be relative, non-empty, free of `..` segments and backslashes.
    pub component: String,
    /// Shell command that produces `component`, run in the manifest's directory.
    pub build: Option<String>,
    /// HTTP routes, in manifest order. Non-empty today; will be allowed to be empty once
    /// functions can be triggered by events instead.
    pub routes: Vec<Route>,
    /// Resource limits, defaults filled in.
    pub limits: Limits,
    /// Environment variables given to the function.
    pub env: BTreeMap<String, String>,
    /// Destinations the function may open connections to; empty means none.
    pub allowed_outbound_hosts: Vec<OutboundHost>,
    /// Key-value stores the function may open through `wasi:keyvalue`, in manifest order,
    /// without duplicates; names follow the app-name rules. Empty means none.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// `wasi:config` values given to the function (`[function.config]`); names follow
    /// [`crate::check_config_name`].
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets of the app the function may read through `wasi:config` (set with
    /// `nimbus secret set`); never overlapping `config`'s names.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Buckets (of the tenant's object storage) the function may open through
    /// `wasi:blobstore`; S3 bucket-name rules.
    #[serde(default)]
    pub buckets: Vec<String>,
}

/// Per-function resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear-memory limit per instance, in MiB (1..=4096; default 128).
    pub memory_mb: u32,
    /// Wall-clock limit per request, in milliseconds (1..=900_000; default 30_000).
    pub timeout_ms: u64,
    /// CPU budget per request, in milliseconds (1..=`timeout_ms`; default `timeout_ms`).
    pub cpu_time_ms: u64,
    /// Most requests served at once by this function (1..=10_000; default 100).
    pub max_concurrency: u32,
    /// Largest accepted request body, in bytes (0..=1 GiB; default 6 MiB).
    pub max_body_bytes: u64,
}

impl Limits {
    /// Default `memory_mb`.
    pub const DEFAULT_MEMORY_MB: u32 = 128;
    /// Allowed `memory_mb` range.
    pub const MEMORY_MB_RANGE: RangeInclusive<u32> = 1..=4096;
    /// Default `timeout_ms`.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// Allowed `timeout_ms` range (15 minutes at most). `cpu_time_ms` must be in
    /// `1..=timeout_ms`.
    pub const TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=900_000;
    /// Default `max_concurrency`.
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
    /// Allowed `max_concurrency` range.
    pub const MAX_CONCURRENCY_RANGE: RangeInclusive<u32> = 1..=10_000;
    /// Default `max_body_bytes` (6 MiB).
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 6 * 1024 * 1024;
    /// Allowed `max_body_bytes` range (up to 1 GiB).
    pub const MAX_BODY_BYTES_RANGE: RangeInclusive<u64> = 0..=1024 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: Self::DEFAULT_MEMORY_MB,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            cpu_time_ms: Self::DEFAULT_TIMEOUT_MS,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }
}
