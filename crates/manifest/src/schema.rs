//! The raw shape of `nimbus.toml`, exactly as written.
//!
//! These structs only describe syntax: which keys exist and what TOML type each holds. Every
//! value is wrapped in [`Spanned`] so that validation can point at the offending text, and
//! everything is optional so that a missing key gets our own message (with a position) instead
//! of serde's positionless "missing field". `deny_unknown_fields` everywhere turns typos into
//! errors that list the expected keys.
//!
//! Triggers (`[[trigger.queue]]`, `[[trigger.cron]]`) are top-level tables naming a function; a
//! function reached only by triggers has no `routes`, which is why `routes` is optional here and
//! the "no routes and no trigger" rule lives in validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use serde_spanned::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a nimbus.toml document")]
pub(crate) struct RawManifest {
    pub app: Option<Spanned<RawApp>>,
    #[serde(rename = "function")]
    pub functions: Option<Spanned<Vec<Spanned<RawFunction>>>>,
    #[serde(rename = "queue")]
    pub queues: Option<Spanned<Vec<Spanned<RawQueue>>>>,
    #[serde(rename = "trigger")]
    pub triggers: Option<Spanned<RawTriggers>>,
}

/// One `[[queue]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[queue]] table")]
pub(crate) struct RawQueue {
    pub name: Option<Spanned<String>>,
    pub max_message_bytes: Option<Spanned<Integer>>,
    pub max_messages: Option<Spanned<Integer>>,
}

/// `[trigger]`: the trigger kinds, each an array of tables.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "[[trigger.queue]] or [[trigger.cron]] tables"
)]
pub(crate) struct RawTriggers {
    pub queue: Option<Vec<Spanned<RawQueueTrigger>>>,
    pub cron: Option<Vec<Spanned<RawCronTrigger>>>,
    pub object: Option<Vec<Spanned<RawChangeTrigger>>>,
    pub kv: Option<Vec<Spanned<RawChangeTrigger>>>,
}

/// One `[[trigger.object]]` or `[[trigger.kv]]`: changes in a bucket or key-value store.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a [[trigger.object]] or [[trigger.kv]] table"
)]
pub(crate) struct RawChangeTrigger {
    pub function: Option<Spanned<String>>,
    /// `[[trigger.object]]` only.
    pub bucket: Option<Spanned<String>>,
    /// `[[trigger.kv]]` only.
    pub store: Option<Spanned<String>>,
    pub events: Option<Spanned<StringList>>,
    pub prefix: Option<Spanned<String>>,
    /// `[[trigger.object]]` only.
    pub suffix: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<Integer>>,
    pub max_attempts: Option<Spanned<Integer>>,
    pub dead_letter_queue: Option<Spanned<String>>,
}

/// One `[[trigger.queue]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[trigger.queue]] table")]
pub(crate) struct RawQueueTrigger {
    pub function: Option<Spanned<String>>,
    pub queue: Option<Spanned<String>>,
    pub batch_size: Option<Spanned<Integer>>,
    pub concurrency: Option<Spanned<Integer>>,
    pub max_attempts: Option<Spanned<Integer>>,
    pub dead_letter_queue: Option<Spanned<String>>,
    pub retry_backoff_ms: Option<Spanned<Integer>>,
    pub max_backoff_ms: Option<Spanned<Integer>>,
    pub visibility_timeout_ms: Option<Spanned<Integer>>,
}

/// One `[[trigger.cron]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[trigger.cron]] table")]
pub(crate) struct RawCronTrigger {
    pub function: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub missed: Option<Spanned<String>>,
}

/// `[app]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [app] table")]
pub(crate) struct RawApp {
    pub name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
}

/// One `[[function]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[function]] table")]
pub(crate) struct RawFunction {
    pub name: Option<Spanned<String>>,
    pub component: Option<Spanned<String>>,
    pub build: Option<Spanned<String>>,
    pub routes: Option<Spanned<StringList>>,
    pub memory_mb: Option<Spanned<Integer>>,
    pub timeout_ms: Option<Spanned<Integer>>,
    pub cpu_time_ms: Option<Spanned<Integer>>,
    pub max_concurrency: Option<Spanned<Integer>>,
    pub max_body_bytes: Option<Spanned<Integer>>,
    pub min_instances: Option<Spanned<Integer>>,
    pub max_waiting: Option<Spanned<Integer>>,
    pub max_wait_ms: Option<Spanned<Integer>>,
    pub max_response_bytes: Option<Spanned<Integer>>,
    pub max_outbound_requests: Option<Spanned<Integer>>,
    pub max_outbound_connections: Option<Spanned<Integer>>,
    pub allowed_outbound_hosts: Option<Spanned<StringList>>,
    pub key_value_stores: Option<Spanned<StringList>>,
    pub config: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub secrets: Option<Spanned<StringList>>,
    pub buckets: Option<Spanned<StringList>>,
    pub queues: Option<Spanned<StringList>>,
    pub env: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    #[serde(rename = "async")]
    pub async_invocation: Option<Spanned<RawAsync>>,
}

/// `[function.async]`: how asynchronous invocations of the function are retried and reported.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [function.async] table")]
pub(crate) struct RawAsync {
    pub max_attempts: Option<Spanned<Integer>>,
    pub retry_backoff_ms: Option<Spanned<Integer>>,
    pub on_success: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
}

/// A TOML integer, range-checked later so that out-of-range values get the same "must be
/// between" message as in-range-type ones. (Deserialising straight into `u32` would report
/// `invalid value: integer `-1`, expected u32`.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;

        impl Visitor<'_> for IntegerVisitor {
            type Value = Integer;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
                i64::try_from(v)
                    .map(Integer)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
        }

        deserializer.deserialize_i64(IntegerVisitor)
    }
}

/// An array of strings, each with its own span. Exists for the error message: a bare string
/// where an array belongs reads "expected an array of strings" rather than "a sequence".
#[derive(Debug)]
pub(crate) struct StringList(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings, e.g. [\"a\", \"b\"]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StringList(items))
            }
        }

        deserializer.deserialize_seq(ListVisitor)
    }
}
