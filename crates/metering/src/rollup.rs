//! Usage summed per group: the counters of an hourly rollup, and a report grouped by app,
//! function, hour or day with its cost. Pure code: the store feeds it hourly rollups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::price::{PriceTable, gb_seconds};
use crate::record::{Outcome, UsageRecord};

/// Milliseconds in an hour and a day.
pub const HOUR_MS: u64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Usage summed over a set of invocations. Every field is a sum (or, for peak memory, a
/// maximum), so counters merge in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Invocations that ran (billed requests): every outcome but `rejected`.
    pub invocations: u64,
    /// Of those, the ones that failed.
    pub errors: u64,
    /// Of those, the ones stopped by their timeout or CPU budget.
    pub timeouts: u64,
    /// Invocations turned away before they ran (not billed).
    pub rejected: u64,
    /// Billed milliseconds.
    pub billed_ms: u64,
    /// Configured memory × billed milliseconds, in MB·ms (GB-s × 1,024,000).
    pub mb_ms: u64,
    /// Run time, in microseconds.
    pub duration_us: u64,
    /// Guest CPU time, in microseconds.
    pub cpu_us: u64,
    /// Body bytes received.
    pub bytes_in: u64,
    /// Body bytes sent.
    pub bytes_out: u64,
    /// The largest linear memory any one instance had.
    pub peak_memory_bytes: u64,
    /// Instances kept ready by `min_instances` × their configured memory × the time they were
    /// kept, in MB·ms, serving or not (billed apart from invocations, at the provisioned
    /// price).
    pub provisioned_mb_ms: u64,
}

impl Counters {
    /// Adds one invocation.
    pub fn add(&mut self, record: &UsageRecord) {
        match record.outcome {
            Outcome::Rejected => self.rejected += 1,
            outcome => {
                self.invocations += 1;
                self.errors += u64::from(outcome == Outcome::Error);
                self.timeouts += u64::from(outcome == Outcome::Timeout);
            }
        }
        self.billed_ms = self.billed_ms.saturating_add(record.billed_ms);
        self.mb_ms = self.mb_ms.saturating_add(record.mb_ms());
        self.duration_us = self.duration_us.saturating_add(record.duration_us);
        self.cpu_us = self.cpu_us.saturating_add(record.cpu_us);
        self.bytes_in = self.bytes_in.saturating_add(record.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(record.bytes_out);
        self.peak_memory_bytes = self.peak_memory_bytes.max(record.peak_memory_bytes);
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &Counters) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.rejected += other.rejected;
        self.billed_ms = self.billed_ms.saturating_add(other.billed_ms);
        self.mb_ms = self.mb_ms.saturating_add(other.mb_ms);
        self.duration_us = self.duration_us.saturating_add(other.duration_us);
        self.cpu_us = self.cpu_us.saturating_add(other.cpu_us);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.provisioned_mb_ms = self
            .provisioned_mb_ms
            .saturating_add(other.provisioned_mb_ms);
    }
}

/// One hourly rollup as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    /// Start of the hour, in ms since the Unix epoch.
    pub hour_ms: u64,
    /// Tenant, app and function.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// The hour's usage.
    pub counters: Counters,
}

/// How a report groups usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One row per app.
    App,
    /// One row per function (of an app).
    Function,
    /// One row per hour (UTC).
    Hour,
    /// One row per day (UTC).
    Day,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "app" => Ok(GroupBy::App),
            "function" => Ok(GroupBy::Function),
            "hour" => Ok(GroupBy::Hour),
            "day" => Ok(GroupBy::Day),
            other => Err(format!(
                "unknown grouping `{other}` (expected app, function, hour or day)"
            )),
        }
    }
}

/// One row of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The app (absent when grouped by hour or day).
    pub app: Option<String>,
    /// The function (present when grouped by function).
    pub function: Option<String>,
    /// Start of the hour or day, in ms since the Unix epoch (when grouped by time).
    pub period_start_ms: Option<u64>,
    /// GB-seconds billed for invocations.
    pub gb_seconds: f64,
    /// GB-seconds of instances kept ready (`min_instances`).
    pub provisioned_gb_seconds: f64,
    /// Cost before the free tier, in US dollars: requests, invocation GB-seconds and
    /// provisioned GB-seconds.
    pub cost_usd: f64,
    /// Every counter, `invocations` (billed requests: all but the rejected ones) first.
    #[serde(flatten)]
    pub counters: Counters,
}

/// A usage report: rows, their total, and the bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Start of the reported range (inclusive, rounded down to the hour), ms since the epoch.
    pub since_ms: u64,
    /// End of the reported range (exclusive), ms since the epoch.
    pub until_ms: u64,
    /// How rows are grouped.
    pub by: GroupBy,
    /// The rows, ordered by group key.
    pub rows: Vec<UsageRow>,
    /// All rows summed.
    pub total: UsageRow,
    /// What the free tier takes off the total (per calendar month in the range).
    pub free_tier_credit_usd: f64,
    /// What is owed: the total cost less the free tier credit.
    pub net_cost_usd: f64,
    /// The prices used.
    pub prices: PriceTable,
}

/// A row's group: (period start, app, function), each present or not by the grouping.
type GroupKey<'a> = (Option<u64>, Option<&'a str>, Option<&'a str>);

impl UsageReport {
    /// Groups `rollups` (already limited to the range and filters) into a report.
    pub fn build(
        rollups: &[Rollup],
        by: GroupBy,
        since_ms: u64,
        until_ms: u64,
        prices: &PriceTable,
    ) -> Self {
        let mut groups: BTreeMap<GroupKey<'_>, Counters> = BTreeMap::new();
        let mut months: BTreeMap<(i32, u32), Counters> = BTreeMap::new();
        let mut total = Counters::default();
        for rollup in rollups {
            let key = match by {
                GroupBy::App => (None, Some(rollup.app.as_str()), None),
                GroupBy::Function => (
                    None,
                    Some(rollup.app.as_str()),
                    Some(rollup.function.as_str()),
                ),
                GroupBy::Hour => (Some(rollup.hour_ms), None, None),
                GroupBy::Day => (Some(rollup.hour_ms - rollup.hour_ms % DAY_MS), None, None),
            };
            groups.entry(key).or_default().merge(&rollup.counters);
            months
                .entry(year_month(rollup.hour_ms))
                .or_default()
                .merge(&rollup.counters);
            total.merge(&rollup.counters);
        }
        let rows = groups
            .into_iter()
            .map(|((period, app, function), counters)| {
                row(
                    app.map(str::to_owned),
                    function.map(str::to_owned),
                    period,
                    counters,
                    prices,
                )
            })
            .collect();
        let free_tier_credit_usd: f64 = months
            .values()
            .map(|c| prices.free_tier_credit(c.invocations, c.mb_ms))
            .sum();
        let total = row(None, None, None, total, prices);
        Self {
            since_ms,
            until_ms,
            by,
            net_cost_usd: (total.cost_usd - free_tier_credit_usd).max(0.0),
            free_tier_credit_usd,
            total,
            rows,
            prices: prices.clone(),
        }
    }
}

fn row(
    app: Option<String>,
    function: Option<String>,
    period_start_ms: Option<u64>,
    counters: Counters,
    prices: &PriceTable,
) -> UsageRow {
    UsageRow {
        app,
        function,
        period_start_ms,
        gb_seconds: gb_seconds(counters.mb_ms),
        provisioned_gb_seconds: gb_seconds(counters.provisioned_mb_ms),
        cost_usd: prices.cost(counters.invocations, counters.mb_ms)
            + prices.provisioned_cost(counters.provisioned_mb_ms),
        counters,
    }
}

/// The UTC (year, month) of a time in ms since the epoch.
pub fn year_month(unix_ms: u64) -> (i32, u32) {
    use chrono::Datelike;
    i64::try_from(unix_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or((1970, 1), |t| (t.year(), t.month()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RECORD_VERSION, TriggerKind};

    fn record(function: &str, ms: u64, memory_mb: u32, outcome: Outcome) -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: "i".into(),
            request_id: "r".into(),
            tenant: "default".into(),
            app: "shop".into(),
            function: function.into(),
            version: 1,
            trigger: TriggerKind::Http,
            start_unix_ms: 0,
            duration_us: ms * 1000,
            billed_ms: UsageRecord::billed_ms_for(ms * 1000, outcome),
            memory_mb,
            peak_memory_bytes: 1 << 20,
            cpu_us: 10,
            bytes_in: 1,
            bytes_out: 2,
            outcome,
            cold_start: false,
        }
    }

    #[test]
    fn counters_sum_by_outcome() {
        let mut c = Counters::default();
        c.add(&record("api", 10, 128, Outcome::Ok));
        c.add(&record("api", 20, 128, Outcome::Error));
        c.add(&record("api", 30, 128, Outcome::Timeout));
        c.add(&record("api", 40, 128, Outcome::Rejected));
        assert_eq!(
            (c.invocations, c.errors, c.timeouts, c.rejected),
            (3, 1, 1, 1)
        );
        assert_eq!(c.billed_ms, 60);
        assert_eq!(c.mb_ms, 60 * 128);
    }

    #[test]
    fn a_report_prices_each_group_and_the_total() {
        let mut api = Counters::default();
        for _ in 0..1000 {
            api.add(&record("api", 100, 1024, Outcome::Ok));
        }
        let mut worker = Counters::default();
        worker.add(&record("worker", 2000, 512, Outcome::Ok));
        let rollups = [
            Rollup {
                hour_ms: 0,
                tenant: "default".into(),
                app: "shop".into(),
                function: "api".into(),
                counters: api,
            },
            Rollup {
                hour_ms: HOUR_MS,
                tenant: "default".into(),
                app: "shop".into(),
                function: "worker".into(),
                counters: worker,
            },
        ];
        let prices = PriceTable::default();
        let report = UsageReport::build(&rollups, GroupBy::Function, 0, DAY_MS, &prices);
        assert_eq!(report.rows.len(), 2);
        // 1,000 × 0.1 s × 1 GB = 100 GB-s; 2 s × 0.5 GB = 1 GB-s.
        assert!((report.rows[0].gb_seconds - 100.0).abs() < 1e-9);
        assert!((report.rows[1].gb_seconds - 1.0).abs() < 1e-9);
        let expected = 1001.0 * 0.20 / 1e6 + 101.0 * 0.000_016_666_7;
        assert!((report.total.cost_usd - expected).abs() < 1e-12);
        assert_eq!(report.net_cost_usd, report.total.cost_usd);

        let by_hour = UsageReport::build(&rollups, GroupBy::Hour, 0, DAY_MS, &prices);
        assert_eq!(by_hour.rows.len(), 2);
        assert_eq!(by_hour.rows[1].period_start_ms, Some(HOUR_MS));
        let by_day = UsageReport::build(&rollups, GroupBy::Day, 0, DAY_MS, &prices);
        assert_eq!(by_day.rows.len(), 1);
        assert_eq!(by_day.rows[0].counters.invocations, 1001);
    }

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(year_month(0), (1970, 1));
        // 2026-12-01T00:00:00Z and one ms before it.
        let dec = 1_796_083_200_000;
        assert_eq!(year_month(dec), (2026, 12));
        assert_eq!(year_month(dec - 1), (2026, 11));
        // 2024-02-29 (leap day) → February.
        assert_eq!(year_month(1_709_164_800_000), (2024, 2));
        assert_eq!(year_month(1_709_251_200_000), (2024, 3));
    }
}
