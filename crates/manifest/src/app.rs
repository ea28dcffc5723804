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
    /// The app's durable queues (`[[queue]]`), in manifest order; names are unique.
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// What invokes functions besides HTTP.
    #[serde(default)]
    pub triggers: Triggers,
}

impl App {
    /// Whether any trigger names `function`.
    pub fn triggered(&self, function: &str) -> bool {
        self.triggers.queue.iter().any(|t| t.function == function)
            || self.triggers.cron.iter().any(|t| t.function == function)
            || self.triggers.object.iter().any(|t| t.function == function)
            || self.triggers.kv.iter().any(|t| t.function == function)
    }
}

/// A durable queue of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Unique within the app; same rules as the app name.
    pub name: String,
    /// Largest message accepted, in bytes (1..=1 MiB; default 256 KiB).
    pub max_message_bytes: u32,
    /// Most messages held at once (ready, delayed and in flight); sends beyond are refused
    /// (HTTP 429) until the consumer catches up (1..=100,000; default 100,000).
    #[serde(default = "Queue::default_max_messages")]
    pub max_messages: u32,
}

impl Queue {
    /// Default `max_message_bytes`.
    pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 256 * 1024;
    /// Allowed `max_message_bytes` range.
    pub const MAX_MESSAGE_BYTES_RANGE: RangeInclusive<u64> = 1..=1024 * 1024;
    /// Default `max_messages`.
    pub const DEFAULT_MAX_MESSAGES: u32 = 100_000;
    /// Allowed `max_messages` range.
    pub const MAX_MESSAGES_RANGE: RangeInclusive<u64> = 1..=100_000;

    fn default_max_messages() -> u32 {
        Self::DEFAULT_MAX_MESSAGES
    }
}

/// The app's triggers, by kind, in manifest order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggers {
    /// `[[trigger.queue]]`: at most one per queue.
    #[serde(default)]
    pub queue: Vec<QueueTrigger>,
    /// `[[trigger.cron]]`.
    #[serde(default)]
    pub cron: Vec<CronTrigger>,
    /// `[[trigger.object]]`: changes in a bucket.
    #[serde(default)]
    pub object: Vec<ChangeTrigger>,
    /// `[[trigger.kv]]`: changes in a key-value store.
    #[serde(default)]
    pub kv: Vec<ChangeTrigger>,
}

/// A change trigger: `function` is invoked for each matching change in a bucket
/// (`[[trigger.object]]`) or a key-value store (`[[trigger.kv]]`). Changes are queued durably
/// (an internal queue per trigger) and delivered with retries like queue messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeTrigger {
    /// The function invoked.
    pub function: String,
    /// The bucket (object triggers) or store (key-value triggers) watched.
    pub source: String,
    /// Which changes (`created`/`deleted` for objects, `set`/`deleted` for keys). Never empty.
    pub events: Vec<ChangeKind>,
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys ending with this (object triggers; empty for key-value triggers).
    pub suffix: String,
    /// Events in flight at once (1..=1000; default 4).
    pub concurrency: u32,
    /// Deliveries before a failing event is dead-lettered or dropped (1..=100; default 3).
    pub max_attempts: u32,
    /// Where events go after `max_attempts` failures (a `[[queue]]` of the app).
    pub dead_letter_queue: Option<String>,
}

impl ChangeTrigger {
    /// Whether a change of `kind` to `key` fires this trigger.
    pub fn matches(&self, kind: ChangeKind, key: &str) -> bool {
        self.events.contains(&kind) && key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }

    /// The internal queue holding this trigger's pending events: the function, the kind and the
    /// watched name, so it stays the same across versions that keep the trigger.
    /// (User queue names start with a letter; these start with `_`.)
    pub fn queue_name(&self, kind: &str) -> String {
        format!("_{kind}.{}.{}", self.function, self.source)
    }
}

/// A kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// An object was written (PUT, multipart completion, copy; `created` in the manifest) or
    /// a key set (`set`).
    Written,
    /// An object or key was deleted.
    Deleted,
}

/// A queue consumer: every message of `queue` is delivered to `function` as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTrigger {
    /// The function invoked (a `[[function]]` of the app).
    pub function: String,
    /// The queue consumed (a `[[queue]]` of the app).
    pub queue: String,
    /// Messages leased per poll (1..=100; default 10).
    pub batch_size: u32,
    /// Invocations in flight at once for this trigger (1..=1000; default 4).
    pub concurrency: u32,
    /// Deliveries before a failing message is dead-lettered or dropped (1..=100; default 3).
    pub max_attempts: u32,
    /// Where messages go after `max_attempts` failures (a `[[queue]]` other than `queue`);
    /// without one they are dropped with an error in the log.
    pub dead_letter_queue: Option<String>,
    /// Delay before the first retry, in ms (1..=3,600,000; default 1,000); doubles per
    /// attempt, with jitter.
    pub retry_backoff_ms: u64,
    /// Longest retry delay, in ms (`retry_backoff_ms`..=43,200,000; default 300,000).
    pub max_backoff_ms: u64,
    /// How long a delivered message stays invisible to other consumers, in ms: longer than the
    /// function's `timeout_ms` (default `timeout_ms` + 10,000; at most 43,200,000).
    pub visibility_timeout_ms: u64,
}

impl QueueTrigger {
    /// Default `batch_size`.
    pub const DEFAULT_BATCH_SIZE: u32 = 10;
    /// Allowed `batch_size` range.
    pub const BATCH_SIZE_RANGE: RangeInclusive<u64> = 1..=100;
    /// Default `concurrency`.
    pub const DEFAULT_CONCURRENCY: u32 = 4;
    /// Allowed `concurrency` range.
    pub const CONCURRENCY_RANGE: RangeInclusive<u64> = 1..=1000;
    /// Default `max_attempts`.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// Allowed `max_attempts` range.
    pub const MAX_ATTEMPTS_RANGE: RangeInclusive<u64> = 1..=100;
    /// Default `retry_backoff_ms`.
    pub const DEFAULT_RETRY_BACKOFF_MS: u64 = 1000;
    /// Allowed `retry_backoff_ms` range.
    pub const RETRY_BACKOFF_MS_RANGE: RangeInclusive<u64> = 1..=3_600_000;
    /// Default `max_backoff_ms` (at least `retry_backoff_ms`).
    pub const DEFAULT_MAX_BACKOFF_MS: u64 = 300_000;
    /// Largest `max_backoff_ms` and `visibility_timeout_ms` (12 hours).
    pub const MAX_DELAY_MS: u64 = 43_200_000;
    /// Added to the function's `timeout_ms` for the default `visibility_timeout_ms`.
    pub const VISIBILITY_MARGIN_MS: u64 = 10_000;
}

/// A schedule: `function` is invoked at every tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronTrigger {
    /// The function invoked.
    pub function: String,
    /// 5 fields (minute first) or 6 (seconds first); parse with [`crate::cron::Schedule`].
    pub schedule: String,
    /// IANA time zone the schedule is read in (default `UTC`).
    pub timezone: String,
    /// What happens to ticks missed while Nimbus was down.
    pub missed: MissedTicks,
}

/// The missed-tick policy of a cron trigger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedTicks {
    /// Dropped.
    Skip,
    /// One catch-up run for the latest missed tick at start-up (the default).
    #[default]
    RunOnce,
}

/// One function: a WebAssembly component plus how it is reached and what it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// Unique within the app; same rules as the app name.
    pub name: String,
    /// Path of the `.wasm` component as written, relative to the manifest's directory. Known to
    /// be relative, non-empty, free of `..` segments and backslashes.
    pub component: String,
    /// Shell command that produces `component`, run in the manifest's directory.
    pub build: Option<String>,
    /// HTTP routes, in manifest order. Empty only for a function that a trigger names (an
    /// event handler reached by no HTTP route).
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
    /// Queues of the app (`[[queue]]`) the function may send to through `nimbus:queue/sender`.
    #[serde(default)]
    pub queues: Vec<String>,
    /// How asynchronous invocations are retried and where their outcomes go
    /// (`[function.async]`).
    #[serde(default, rename = "async")]
    pub async_invocation: AsyncConfig,
}

/// `[function.async]` (Lambda's asynchronous-invocation configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncConfig {
    /// Attempts before an invocation is failed (1..=100; default 3).
    pub max_attempts: u32,
    /// Delay before the first retry, in ms; doubles per attempt, with jitter (default 1,000).
    pub retry_backoff_ms: u64,
    /// A `[[queue]]` that gets a record of every successful invocation.
    pub on_success: Option<String>,
    /// A `[[queue]]` that gets a record of every invocation that failed for good.
    pub on_failure: Option<String>,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            max_attempts: QueueTrigger::DEFAULT_MAX_ATTEMPTS,
            retry_backoff_ms: QueueTrigger::DEFAULT_RETRY_BACKOFF_MS,
            on_success: None,
            on_failure: None,
        }
    }
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
    /// Instances kept ready however long the function idles (0..=`max_concurrency`; default
    /// 0: the function scales to zero). With 1 or more, its code is never released from
    /// memory, so no call pays an activation (Lambda's provisioned concurrency).
    #[serde(default)]
    pub min_instances: u32,
    /// Requests that may wait for a free slot once `max_concurrency` are running
    /// (0..=10_000; default 0: a request past `max_concurrency` gets 429 at once). Waiting
    /// requests are served first come, first served; past this bound, 429 at once.
    #[serde(default)]
    pub max_waiting: u32,
    /// How long a request may wait for a slot before it gets 429, in ms (1..=`timeout_ms`;
    /// default 1,000).
    #[serde(default = "Limits::default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Largest response body, in bytes (0..=64 GiB; default 1 GiB). A function that writes
    /// more has its response cut off (the client sees an incomplete body, never a complete
    /// one) and its instance stopped.
    #[serde(default = "Limits::default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Outbound HTTP requests one invocation may make in all (0..=10_000; default 1,000, as
    /// Cloudflare Workers allow subrequests). Past it, the guest's request fails with
    /// `connection-limit-reached` before anything is sent.
    #[serde(default = "Limits::default_max_outbound_requests")]
    pub max_outbound_requests: u32,
    /// Outbound connections one invocation may have open at once (1..=1_000; default 6, as
    /// Cloudflare Workers). Further requests wait, first come first served, for one to close,
    /// within the invocation's timeout.
    #[serde(default = "Limits::default_max_outbound_connections")]
    pub max_outbound_connections: u32,
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
    /// Allowed `max_waiting` range.
    pub const MAX_WAITING_RANGE: RangeInclusive<u32> = 0..=10_000;
    /// Default `max_wait_ms`.
    pub const DEFAULT_MAX_WAIT_MS: u64 = 1_000;

    fn default_max_wait_ms() -> u64 {
        Self::DEFAULT_MAX_WAIT_MS
    }

    /// Default `max_response_bytes` (1 GiB).
    pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 30;
    /// Allowed `max_response_bytes` range (up to 64 GiB).
    pub const MAX_RESPONSE_BYTES_RANGE: RangeInclusive<u64> = 0..=64 << 30;

    fn default_max_response_bytes() -> u64 {
        Self::DEFAULT_MAX_RESPONSE_BYTES
    }

    /// Default `max_outbound_requests`.
    pub const DEFAULT_MAX_OUTBOUND_REQUESTS: u32 = 1_000;
    /// Allowed `max_outbound_requests` range.
    pub const MAX_OUTBOUND_REQUESTS_RANGE: RangeInclusive<u32> = 0..=10_000;
    /// Default `max_outbound_connections`.
    pub const DEFAULT_MAX_OUTBOUND_CONNECTIONS: u32 = 6;
    /// Allowed `max_outbound_connections` range.
    pub const MAX_OUTBOUND_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_000;

    fn default_max_outbound_requests() -> u32 {
        Self::DEFAULT_MAX_OUTBOUND_REQUESTS
    }

    fn default_max_outbound_connections() -> u32 {
        Self::DEFAULT_MAX_OUTBOUND_CONNECTIONS
    }

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
            min_instances: 0,
            max_waiting: 0,
            max_wait_ms: Self::DEFAULT_MAX_WAIT_MS,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
            max_outbound_requests: Self::DEFAULT_MAX_OUTBOUND_REQUESTS,
            max_outbound_connections: Self::DEFAULT_MAX_OUTBOUND_CONNECTIONS,
        }
    }
}
