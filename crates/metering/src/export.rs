//! Reading time ranges as users write them, and writing reports as CSV.

use std::fmt::Write as _;

use crate::rollup::UsageReport;

/// A point in time as the usage API and `nimbus usage` take it: a duration back from `now_ms`
/// (`90s`, `30m`, `24h`, `7d`) or milliseconds since the Unix epoch.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` is not a time"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a time (expected e.g. 90s, 30m, 24h, 7d or milliseconds since the epoch)")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (expected s, m, h or d)"
            ));
        }
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: &str = "app,function,period_start_ms,invocations,errors,timeouts,rejected,billed_ms,gb_seconds,cost_usd,duration_us,cpu_us,bytes_in,bytes_out,peak_memory_bytes,provisioned_gb_seconds";

/// The report's rows as CSV (RFC 4180), one line per row after [`CSV_HEADER`]; the total is
/// not repeated.
pub fn to_csv(report: &UsageReport) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for row in &report.rows {
        let c = &row.counters;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
            field(row.app.as_deref().unwrap_or("")),
            field(row.function.as_deref().unwrap_or("")),
            row.period_start_ms
                .map(|p| p.to_string())
                .unwrap_or_default(),
            row.counters.invocations,
            c.errors,
            c.timeouts,
            c.rejected,
            c.billed_ms,
            row.gb_seconds,
            row.cost_usd,
            c.duration_us,
            c.cpu_us,
            c.bytes_in,
            c.bytes_out,
            c.peak_memory_bytes,
            row.provisioned_gb_seconds,
        );
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::PriceTable;
    use crate::rollup::{Counters, GroupBy, Rollup};

    #[test]
    fn times() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_time("24h", now), Ok(9 * 86_400_000));
        assert_eq!(parse_time("7d", now), Ok(3 * 86_400_000));
        assert_eq!(parse_time("90s", now), Ok(now - 90_000));
        assert_eq!(parse_time("1764547200000", now), Ok(1_764_547_200_000));
        assert_eq!(parse_time("30d", now), Ok(0));
        assert!(parse_time("10w", now).unwrap_err().contains("unknown unit"));
        assert!(parse_time("soon", now).is_err());
        assert!(parse_time("", now).is_err());
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_row() {
        let counters = Counters {
            invocations: 2,
            billed_ms: 10,
            mb_ms: 1_024_000,
            provisioned_mb_ms: 2_048_000,
            ..Counters::default()
        };
        let rollups = [Rollup {
            hour_ms: 0,
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            counters,
        }];
        let report = UsageReport::build(&rollups, GroupBy::Function, 0, 1, &PriceTable::default());
        let csv = to_csv(&report);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert!(
            lines[1].starts_with("shop,api,,2,0,0,0,10,1,"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].ends_with(",2"),
            "provisioned GB-s last: {}",
            lines[1]
        );
        assert_eq!(lines.len(), 3, "header, one row, and the final line break");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
