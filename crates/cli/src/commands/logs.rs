//! `nimbus logs [APP[/FUNCTION]] [--since 1h] [--invocation ID] [-f]`: functions' output and
//! the platform's events about their invocations, each line tagged with its request id.

use std::io::Write;

use nimbus_logs::LogLine;

use crate::args::LogsArgs;
use crate::client::{ApiClient, LogQuery};

/// `nimbus logs`.
pub async fn run(args: LogsArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let (app, function) = super::split_target(args.target.as_deref());
    let query = LogQuery {
        app,
        function,
        invocation: args.invocation.as_deref(),
        since: Some(&args.since),
        limit: Some(args.limit),
    };
    let print = |line: LogLine| -> bool {
        let mut out = std::io::stdout().lock();
        let written = if json {
            serde_json::to_string(&line)
                .map_err(std::io::Error::other)
                .and_then(|text| writeln!(out, "{text}"))
        } else {
            writeln!(out, "{}", human(&line))
        };
        // A closed pipe (`nimbus logs -f | head`) ends the command quietly.
        written.and_then(|()| out.flush()).is_ok()
    };
    if args.follow {
        return client.follow_logs(&query, print).await;
    }
    let response = client.logs(&query).await?;
    for line in response.lines {
        if !print(line) {
            break;
        }
    }
    if response.counts.lost > 0 {
        eprintln!(
            "warning: {} log line(s) could not be stored since the server started",
            response.counts.lost
        );
    }
    Ok(())
}

/// `2026-12-01T07:31:02.123Z shop/api 0190…ab stdout: the text`.
fn human(line: &LogLine) -> String {
    let ts = i64::try_from(line.ts_unix_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || line.ts_unix_ms.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        );
    format!(
        "{ts} {}/{} {} {}: {}",
        line.app,
        line.function,
        line.request_id,
        line.stream.as_str(),
        line.message
    )
}
