//! The usage record: what one invocation used, as it is stored, exported and billed.
//!
//! The record is versioned ([`UsageRecord::v`], now [`RECORD_VERSION`]): fields are only ever
//! added (with serde defaults), so a reader of version N reads every record written at N or
//! before. A snapshot test pins the JSON shape.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::id::RecordId;

/// The version written into every new record.
pub const RECORD_VERSION: u32 = 1;

/// What started an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// An HTTP request through the gateway.
    Http,
    /// A message of a `[[trigger.queue]]`.
    Queue,
    /// A tick of a `[[trigger.cron]]`.
    Cron,
    /// An object-storage change of a `[[trigger.object]]`.
    Object,
    /// A key-value change of a `[[trigger.kv]]`.
    Kv,
    /// An asynchronous invocation (`POST …/invocations`).
    Async,
}

impl TriggerKind {
    /// The name used in records, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Http => "http",
            TriggerKind::Queue => "queue",
            TriggerKind::Cron => "cron",
            TriggerKind::Object => "object",
            TriggerKind::Kv => "kv",
            TriggerKind::Async => "async",
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The function ran to completion (whatever HTTP status it chose).
    Ok,
    /// The function trapped, failed, or sent no response.
    Error,
    /// The function ran past its wall-clock timeout or its CPU budget.
    Timeout,
    /// The platform turned the invocation away before it ran (concurrency, wait queue, app
    /// budget). Rejected invocations are recorded but never billed.
    Rejected,
}

impl Outcome {
    /// Every outcome, in a fixed order (for tables and metrics).
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::Rejected,
    ];

    /// The name used in records, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
        }
    }

    /// Whether invocations with this outcome are billed (everything that ran is).
    pub fn is_billed(self) -> bool {
        self != Outcome::Rejected
    }
}

/// What one invocation used. Names are shared (`Arc<str>`) with the invocation that made the
/// record; ids are copied into it ([`RecordId`]), so the writer thread that drops it frees none
/// of the invocation's allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Record format version ([`RECORD_VERSION`] when written by this build).
    pub v: u32,
    /// The invocation: stable across retries of the same event or async invocation.
    pub invocation_id: RecordId,
    /// This run of it: the id on its log lines (and `x-request-id` for HTTP).
    pub request_id: RecordId,
    /// The tenant owning the app.
    pub tenant: Arc<str>,
    /// The app.
    pub app: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// The app version that ran.
    pub version: u64,
    /// What started it.
    pub trigger: TriggerKind,
    /// Wall-clock start, in milliseconds since the Unix epoch (for grouping by hour and day;
    /// never used to compute durations).
    pub start_unix_ms: u64,
    /// How long it ran, from the monotonic clock, in microseconds: from admission until the
    /// guest finished and its response body was handed over in full (or dropped).
    pub duration_us: u64,
    /// The billed duration: `duration_us` rounded up to the next millisecond (as Lambda
    /// bills), 0 for rejected invocations.
    pub billed_ms: u64,
    /// The function's configured memory (`memory_mb`): what GB-seconds are charged on.
    pub memory_mb: u32,
    /// The most linear memory the instance had at once, in bytes.
    pub peak_memory_bytes: u64,
    /// Time the guest spent running on a thread (its polls), in microseconds.
    pub cpu_us: u64,
    /// Request body bytes the function read (a body it never reads counts 0), or the size of
    /// an event's data.
    pub bytes_in: u64,
    /// Response body bytes the function sent.
    pub bytes_out: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether it found its function scaled to zero and had to activate it first.
    #[serde(default)]
    pub cold_start: bool,
}

impl UsageRecord {
    /// `duration_us` rounded up to whole milliseconds: what Lambda bills since December 2020
    /// (1 ms granularity, any started millisecond counts).
    pub fn billed_ms_for(duration_us: u64, outcome: Outcome) -> u64 {
        if outcome.is_billed() {
            duration_us.div_ceil(1000)
        } else {
            0
        }
    }

    /// Configured memory × billed duration, in MB·ms: GB-seconds × 1,024,000, kept as an
    /// integer so sums are exact.
    pub fn mb_ms(&self) -> u64 {
        u64::from(self.memory_mb).saturating_mul(self.billed_ms)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: "0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4".into(),
            request_id: "0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4".into(),
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            version: 3,
            trigger: TriggerKind::Http,
            start_unix_ms: 1_764_547_200_123,
            duration_us: 12_345,
            billed_ms: 13,
            memory_mb: 128,
            peak_memory_bytes: 1_179_648,
            cpu_us: 9_876,
            bytes_in: 42,
            bytes_out: 1_024,
            outcome: Outcome::Ok,
            cold_start: false,
        }
    }

    #[test]
    fn the_wire_format_is_pinned() {
        insta::assert_json_snapshot!(sample());
    }

    #[test]
    fn records_round_trip() {
        let json = serde_json::to_string(&sample()).unwrap();
        let back: UsageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn billing_rounds_up_to_the_millisecond_and_skips_rejections() {
        assert_eq!(UsageRecord::billed_ms_for(0, Outcome::Ok), 0);
        assert_eq!(UsageRecord::billed_ms_for(1, Outcome::Ok), 1);
        assert_eq!(UsageRecord::billed_ms_for(1_000, Outcome::Error), 1);
        assert_eq!(UsageRecord::billed_ms_for(1_001, Outcome::Timeout), 2);
        assert_eq!(UsageRecord::billed_ms_for(5_000, Outcome::Rejected), 0);
        assert_eq!(sample().mb_ms(), 128 * 13);
    }
}
