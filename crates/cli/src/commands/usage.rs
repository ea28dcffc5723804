//! `nimbus usage [APP[/FUNCTION]] [--since 24h] [--by function]`: invocations, GB-seconds and
//! cost, as a table with totals, JSON rows (`--json`), CSV (`--csv`), or single invocations'
//! records (`--records`, `--id`).

use nimbus_metering::{GroupBy, UsageRow};

use crate::args::UsageArgs;
use crate::client::{ApiClient, UsageQuery};
use crate::output;

/// `nimbus usage`.
pub async fn run(args: UsageArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let (app, function) = super::split_target(args.target.as_deref());
    let by: GroupBy = args.by.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let query = UsageQuery {
        since: Some(&args.since),
        until: args.until.as_deref(),
        by: Some(&args.by),
        app,
        function,
    };
    if args.records || args.id.is_some() {
        let records = client
            .usage_records(&query, args.id.as_deref(), args.limit)
            .await?
            .records;
        if json {
            return output::json(&records);
        }
        println!(
            "{:<32} {:<24} {:<7} {:<8} {:>9} {:>8} {:>7} {:>9}",
            "REQUEST", "FUNCTION", "TRIGGER", "OUTCOME", "DURATION", "BILLED", "MEMORY", "PEAK-MEM"
        );
        for r in records {
            println!(
                "{:<32} {:<24} {:<7} {:<8} {:>7.2}ms {:>6}ms {:>5}MB {:>7.1}MB",
                r.request_id,
                format!("{}/{}", r.app, r.function),
                r.trigger.as_str(),
                r.outcome.as_str(),
                r.duration_us as f64 / 1000.0,
                r.billed_ms,
                r.memory_mb,
                r.peak_memory_bytes as f64 / (1 << 20) as f64,
            );
        }
        return Ok(());
    }
    if args.csv {
        print!("{}", client.usage_csv(&query).await?);
        return Ok(());
    }
    let usage = client.usage(&query).await?;
    if json {
        return output::json(&usage.report.rows);
    }
    let report = &usage.report;
    // The provisioned column only where there is provisioned time (`min_instances`).
    let provisioned = report.total.provisioned_gb_seconds > 0.0;
    let right = if provisioned { 76 } else { 59 };
    print!(
        "{:<28} {:>12} {:>8} {:>9} {:>14}",
        group_title(by),
        "INVOCATIONS",
        "ERRORS",
        "REJECTED",
        "GB-SECONDS",
    );
    if provisioned {
        print!(" {:>16}", "PROVISIONED GB-S");
    }
    println!(" {:>12}", "COST (USD)");
    for row in &report.rows {
        print_row(&group_name(by, row), row, provisioned);
    }
    print_row("TOTAL", &report.total, provisioned);
    if report.free_tier_credit_usd > 0.0 {
        println!(
            "{:<28} {:>right$.6}",
            "free tier", -report.free_tier_credit_usd
        );
        println!("{:<28} {:>right$.6}", "NET", report.net_cost_usd);
    }
    println!(
        "prices: ${} per million requests, ${} per GB-second, ${} per provisioned GB-second",
        report.prices.per_million_requests_usd,
        report.prices.per_gb_second_usd,
        report.prices.per_provisioned_gb_second_usd
    );
    let metering = &usage.metering;
    if metering.unbilled > 0 {
        eprintln!(
            "warning: the usage of {} invocation(s) could not be stored since the server started (see its log); these totals are short by as many invocations",
            metering.unbilled
        );
    }
    if metering.lost > metering.unbilled {
        eprintln!(
            "note: {} per-invocation usage record(s) could not be stored since the server started (see its log); their usage is in these totals",
            metering.lost - metering.unbilled
        );
    }
    Ok(())
}

fn print_row(name: &str, row: &UsageRow, provisioned: bool) {
    print!(
        "{:<28} {:>12} {:>8} {:>9} {:>14.6}",
        name,
        row.counters.invocations,
        row.counters.errors + row.counters.timeouts,
        row.counters.rejected,
        row.gb_seconds,
    );
    if provisioned {
        print!(" {:>16.6}", row.provisioned_gb_seconds);
    }
    println!(" {:>12.6}", row.cost_usd);
}

fn group_title(by: GroupBy) -> &'static str {
    match by {
        GroupBy::App => "APP",
        GroupBy::Function => "FUNCTION",
        GroupBy::Hour => "HOUR (UTC)",
        GroupBy::Day => "DAY (UTC)",
    }
}

fn group_name(by: GroupBy, row: &UsageRow) -> String {
    match (by, &row.app, &row.function, row.period_start_ms) {
        (GroupBy::Function, Some(app), Some(function), _) => format!("{app}/{function}"),
        (GroupBy::App, Some(app), _, _) => app.clone(),
        (GroupBy::Hour, _, _, Some(ms)) => utc(ms, true),
        (GroupBy::Day, _, _, Some(ms)) => utc(ms, false),
        _ => "-".into(),
    }
}

/// `YYYY-MM-DD[ HH:00]` in UTC.
fn utc(ms: u64, with_hour: bool) -> String {
    let format = if with_hour {
        "%Y-%m-%d %H:00"
    } else {
        "%Y-%m-%d"
    };
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0, true), "1970-01-01 00:00");
        assert_eq!(
            utc(1_796_083_200_000 + 5 * 3_600_000, true),
            "2026-12-01 05:00"
        );
        assert_eq!(utc(1_709_164_800_000, false), "2024-02-29");
    }
}
