//! Prometheus metrics (OpenMetrics text, `prometheus-client`): what the platform did, for an
//! operator's dashboards and alerts.
//!
//! Two kinds of series:
//!
//! - **From usage records** (counted by the meter's writer thread as each batch passes, so the
//!   invocation path pays nothing for them; a record the writer's queue refuses is counted by
//!   the invocation that made it): invocations by outcome and trigger, duration
//!   histogram, cold starts, billed GB-seconds, CPU seconds, body bytes.
//! - **Counted where they happen**: key-value and object-store operations (by the stores'
//!   wrappers), and **read at scrape time** from a [`Snapshot`] the caller gathers: functions
//!   resident and instances in flight, queue depths, usage records written, lost and
//!   unbilled.
//!
//! Labels are the app and function names (bounded by what is deployed), never ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use crate::meter::MeterCounts;
use crate::price::gb_seconds;
use crate::record::UsageRecord;

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    app: String,
    function: String,
    trigger: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    app: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    app: String,
    function: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    app: String,
    queue: String,
    state: String,
}

type FloatCounter = Counter<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // 0.5 ms … ~66 s, doubling.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// The platform's metrics.
pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    duration: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    cold_starts: Family<FunctionLabels, Counter>,
    gb_seconds: Family<FunctionLabels, FloatCounter>,
    provisioned_gb_seconds: Family<FunctionLabels, FloatCounter>,
    cpu_seconds: Family<FunctionLabels, FloatCounter>,
    bytes: Family<BytesLabels, Counter>,
    kv_ops: Family<OpLabels, Counter>,
    object_ops: Family<OpLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A live function as the scrape sees it.
#[derive(Debug, Clone)]
pub struct FunctionGauge {
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// Whether its code is in memory.
    pub resident: bool,
    /// Invocations running now.
    pub in_flight: u64,
    /// Pre-instantiated instances waiting for an invocation (`min_instances`).
    pub ready: u64,
}

/// A queue as the scrape sees it.
#[derive(Debug, Clone)]
pub struct QueueGauge {
    /// The app.
    pub app: String,
    /// The queue.
    pub queue: String,
    /// Messages visible now.
    pub ready: u64,
    /// Messages waiting for a delay or retry backoff.
    pub delayed: u64,
    /// Messages leased to a consumer.
    pub in_flight: u64,
}

/// An app active within the last second, as the fair-share governor sees it.
#[derive(Debug, Clone)]
pub struct AppGauge {
    /// The app.
    pub app: String,
    /// Over its CPU share on a contended machine: its invocations queue for a CPU slot.
    pub throttled: bool,
}

/// What is read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Whether the machine is contended (fair sharing applies), if the engine says.
    pub cpu_contended: Option<bool>,
    /// Apps active within the last second.
    pub apps: Vec<AppGauge>,
    /// Every live function.
    pub functions: Vec<FunctionGauge>,
    /// Every declared queue.
    pub queues: Vec<QueueGauge>,
    /// The meter's counts.
    pub records: Option<MeterCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under the `nimbus_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nimbus");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by app, function, trigger and outcome (ok, error, timeout, rejected)",
            invocations.clone(),
        );
        let duration: Family<FunctionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "invocation_duration_seconds",
            "Run time of invocations that ran, until the response body was sent",
            duration.clone(),
        );
        let cold_starts = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "cold_starts",
            "Invocations that found their function scaled to zero and activated it",
            cold_starts.clone(),
        );
        let gb_seconds = Family::<FunctionLabels, FloatCounter>::default();
        registry.register(
            "billed_gb_seconds",
            "GB-seconds billed (configured memory × duration rounded up to 1 ms)",
            gb_seconds.clone(),
        );
        let provisioned_gb_seconds = Family::<FunctionLabels, FloatCounter>::default();
        registry.register(
            "provisioned_gb_seconds",
            "GB-seconds of instances kept ready by min_instances (configured memory × time kept)",
            provisioned_gb_seconds.clone(),
        );
        let cpu_seconds = Family::<FunctionLabels, FloatCounter>::default();
        registry.register(
            "cpu_seconds",
            "Time guests spent running on a thread",
            cpu_seconds.clone(),
        );
        let bytes = Family::<BytesLabels, Counter>::default();
        registry.register(
            "function_body_bytes",
            "Request body bytes read (direction=in) and response body bytes sent (out)",
            bytes.clone(),
        );
        let kv_ops = Family::<OpLabels, Counter>::default();
        registry.register(
            "kv_operations",
            "Key-value operations, from functions and the API",
            kv_ops.clone(),
        );
        let object_ops = Family::<OpLabels, Counter>::default();
        registry.register(
            "object_operations",
            "Object-store operations, from functions, the S3 API and triggers",
            object_ops.clone(),
        );
        Self {
            registry,
            invocations,
            duration,
            cold_starts,
            gb_seconds,
            provisioned_gb_seconds,
            cpu_seconds,
            bytes,
            kv_ops,
            object_ops,
        }
    }

    /// Counts the provisioned time (`min_instances`) of sums just written (their invocations
    /// were counted when their records were).
    pub fn observe_provisioned(&self, sums: &crate::carry::HourlySums) {
        for ((_, _, app, function), counters) in sums.groups() {
            if counters.provisioned_mb_ms == 0 {
                continue;
            }
            self.provisioned_gb_seconds
                .get_or_create(&FunctionLabels {
                    app: app.to_string(),
                    function: function.to_string(),
                })
                .inc_by(gb_seconds(counters.provisioned_mb_ms));
        }
    }

    /// Counts a batch of usage records: summed per series first, so each series is looked up
    /// once per batch, not once per record.
    pub fn observe(&self, records: &[UsageRecord]) {
        // Durations go straight into their function's histogram (a handle looked up once per
        // function and batch). Collecting them first grew a fresh vector every batch, its
        // reallocations landing on new pages the kernel zeroed; without it the writer's CPU
        // samples fell by a fifth under load (BENCHMARKS.md, metering).
        struct Sums {
            labels: FunctionLabels,
            duration: Histogram,
            cold: u64,
            mb_ms: u64,
            cpu_us: u64,
            bytes_in: u64,
            bytes_out: u64,
        }
        let mut counts: BTreeMap<(&str, &str, &'static str, &'static str), u64> = BTreeMap::new();
        let mut sums: BTreeMap<(&str, &str), Sums> = BTreeMap::new();
        for r in records {
            *counts
                .entry((&r.app, &r.function, r.trigger.as_str(), r.outcome.as_str()))
                .or_default() += 1;
            if !r.outcome.is_billed() {
                continue;
            }
            let s = sums.entry((&r.app, &r.function)).or_insert_with(|| {
                let labels = FunctionLabels {
                    app: r.app.to_string(),
                    function: r.function.to_string(),
                };
                Sums {
                    duration: self.duration.get_or_create_owned(&labels),
                    labels,
                    cold: 0,
                    mb_ms: 0,
                    cpu_us: 0,
                    bytes_in: 0,
                    bytes_out: 0,
                }
            });
            s.duration.observe(r.duration_us as f64 / 1e6);
            s.cold += u64::from(r.cold_start);
            s.mb_ms += r.mb_ms();
            s.cpu_us += r.cpu_us;
            s.bytes_in += r.bytes_in;
            s.bytes_out += r.bytes_out;
        }
        for ((app, function, trigger, outcome), n) in counts {
            self.invocations
                .get_or_create(&InvocationLabels {
                    app: app.to_owned(),
                    function: function.to_owned(),
                    trigger: trigger.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(n);
        }
        for s in sums.into_values() {
            let f = &s.labels;
            if s.cold > 0 {
                self.cold_starts.get_or_create(f).inc_by(s.cold);
            }
            self.gb_seconds.get_or_create(f).inc_by(gb_seconds(s.mb_ms));
            self.cpu_seconds
                .get_or_create(f)
                .inc_by(s.cpu_us as f64 / 1e6);
            for (direction, n) in [("in", s.bytes_in), ("out", s.bytes_out)] {
                self.bytes
                    .get_or_create(&BytesLabels {
                        app: f.app.clone(),
                        function: f.function.clone(),
                        direction: direction.to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts one key-value operation (`get`, `set`, `delete`, `exists`, `list`, `increment`,
    /// `compare_and_swap`).
    pub fn kv_op(&self, op: &str) {
        self.kv_ops
            .get_or_create(&OpLabels { op: op.to_owned() })
            .inc();
    }

    /// Counts one object-store operation (`put`, `get`, `head`, `delete`, `copy`, `list`, …).
    pub fn object_op(&self, op: &str) {
        self.object_ops
            .get_or_create(&OpLabels { op: op.to_owned() })
            .inc();
    }

    /// The exposition: every series, then the scrape-time ones from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
        let mut scrape = Registry::with_prefix("nimbus");
        let resident = Family::<FunctionLabels, Gauge>::default();
        let in_flight = Family::<FunctionLabels, Gauge>::default();
        let ready = Family::<FunctionLabels, Gauge>::default();
        for f in &snapshot.functions {
            let labels = FunctionLabels {
                app: f.app.clone(),
                function: f.function.clone(),
            };
            resident.get_or_create(&labels).set(i64::from(f.resident));
            in_flight
                .get_or_create(&labels)
                .set(i64::try_from(f.in_flight).unwrap_or(i64::MAX));
            ready
                .get_or_create(&labels)
                .set(i64::try_from(f.ready).unwrap_or(i64::MAX));
        }
        scrape.register(
            "function_resident",
            "1 while a function's code is in memory, 0 once it scaled to zero",
            resident,
        );
        scrape.register(
            "instances_in_flight",
            "Invocations running now (each in its own instance)",
            in_flight,
        );
        scrape.register(
            "instances_ready",
            "Pre-instantiated instances waiting for an invocation (min_instances)",
            ready,
        );
        let depth = Family::<QueueLabels, Gauge>::default();
        for q in &snapshot.queues {
            for (state, n) in [
                ("ready", q.ready),
                ("delayed", q.delayed),
                ("in_flight", q.in_flight),
            ] {
                depth
                    .get_or_create(&QueueLabels {
                        app: q.app.clone(),
                        queue: q.queue.clone(),
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        scrape.register(
            "queue_messages",
            "Messages in a queue by state (ready, delayed, in_flight)",
            depth,
        );
        if let Some(contended) = snapshot.cpu_contended {
            let gauge: Gauge = Gauge::default();
            gauge.set(i64::from(contended));
            scrape.register(
                "cpu_contended",
                "1 while the machine's CPUs are saturated and two or more apps are active: CPU \
                 slots apply between apps",
                gauge,
            );
        }
        let throttled = Family::<AppLabels, Gauge>::default();
        for a in &snapshot.apps {
            throttled
                .get_or_create(&AppLabels { app: a.app.clone() })
                .set(i64::from(a.throttled));
        }
        scrape.register(
            "app_cpu_throttled",
            "1 while an app uses more than its share of a contended machine's CPU (its \
             invocations queue for a CPU slot), by active app",
            throttled,
        );
        if let Some(records) = snapshot.records {
            let written: Counter = Counter::default();
            written.inc_by(records.written);
            scrape.register(
                "usage_records_written",
                "Usage records committed to the usage store",
                written,
            );
            let lost: Counter = Counter::default();
            lost.inc_by(records.lost);
            scrape.register(
                "usage_records_lost",
                "Usage records whose per-invocation row could not be stored (full queue or \
                 failed write); their usage is still billed unless also unbilled",
                lost,
            );
            let unbilled: Counter = Counter::default();
            unbilled.inc_by(records.unbilled);
            scrape.register(
                "usage_records_unbilled",
                "Lost usage records whose usage is in no rollup either: the bill is short by \
                 these invocations",
                unbilled,
            );
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)?;
        prometheus_client::encoding::text::encode_registry(&mut out, &scrape)?;
        prometheus_client::encoding::text::encode_eof(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, RECORD_VERSION, TriggerKind};

    fn record(outcome: Outcome, cold_start: bool) -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: "i".into(),
            request_id: "r".into(),
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            version: 1,
            trigger: TriggerKind::Http,
            start_unix_ms: 0,
            duration_us: 1500,
            billed_ms: UsageRecord::billed_ms_for(1500, outcome),
            memory_mb: 1024,
            peak_memory_bytes: 0,
            cpu_us: 1000,
            bytes_in: 3,
            bytes_out: 10,
            outcome,
            cold_start,
        }
    }

    #[test]
    fn series_follow_the_records_and_the_snapshot() {
        let metrics = Metrics::new();
        metrics.observe(&[
            record(Outcome::Ok, true),
            record(Outcome::Ok, false),
            record(Outcome::Rejected, false),
        ]);
        metrics.kv_op("get");
        let text = metrics
            .render(&Snapshot {
                functions: vec![FunctionGauge {
                    app: "shop".into(),
                    function: "api".into(),
                    resident: true,
                    in_flight: 2,
                    ready: 1,
                }],
                queues: vec![QueueGauge {
                    app: "shop".into(),
                    queue: "jobs".into(),
                    ready: 5,
                    delayed: 0,
                    in_flight: 1,
                }],
                records: Some(MeterCounts {
                    accepted: 3,
                    written: 3,
                    lost: 2,
                    failed_batches: 0,
                    unbilled: 1,
                }),
                cpu_contended: Some(true),
                apps: vec![AppGauge {
                    app: "flood".into(),
                    throttled: true,
                }],
            })
            .unwrap();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        has(r#"nimbus_invocations_total{app="shop",function="api",trigger="http",outcome="ok"} 2"#);
        has(
            r#"nimbus_invocations_total{app="shop",function="api",trigger="http",outcome="rejected"} 1"#,
        );
        has(r#"nimbus_cold_starts_total{app="shop",function="api"} 1"#);
        // 2 × 1 GB × 2 ms = 0.004 GB-s.
        has(r#"nimbus_billed_gb_seconds_total{app="shop",function="api"} 0.004"#);
        has(r#"nimbus_invocation_duration_seconds_count{app="shop",function="api"} 2"#);
        has(r#"nimbus_function_body_bytes_total{app="shop",function="api",direction="out"} 20"#);
        has(r#"nimbus_kv_operations_total{op="get"} 1"#);
        has(r#"nimbus_instances_in_flight{app="shop",function="api"} 2"#);
        has(r#"nimbus_instances_ready{app="shop",function="api"} 1"#);
        has(r#"nimbus_queue_messages{app="shop",queue="jobs",state="ready"} 5"#);
        has("nimbus_usage_records_lost_total 2");
        has("nimbus_usage_records_unbilled_total 1");
        has("nimbus_cpu_contended 1");
        has(r#"nimbus_app_cpu_throttled{app="flood"} 1"#);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
