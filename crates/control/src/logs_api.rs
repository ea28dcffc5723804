//! The logs API: `GET /v1/logs` — a function's stored log lines, newest last; with
//! `follow=true`, those and then every new line as it is written, as NDJSON, until the client
//! hangs up.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use nimbus_logs::{LogCounts, LogError, LogFilter, LogLine, Logs};
use nimbus_metering::export::parse_time;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::api::ApiState;
use crate::error::ControlError;

type Shared = Arc<ApiState>;

impl From<LogError> for ControlError {
    fn from(e: LogError) -> Self {
        Self::Store(e.to_string())
    }
}

/// `GET /v1/logs` parameters.
#[derive(Debug, Deserialize)]
pub struct LogParams {
    /// Only this app.
    pub app: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only the lines of this invocation (or request) id.
    pub invocation: Option<String>,
    /// From: a duration back from now (`10m`, `1h`) or ms since the epoch (default `1h`).
    pub since: Option<String>,
    /// At most this many stored lines, the newest (default 200, at most 10,000).
    pub limit: Option<usize>,
    /// Keep the response open and stream new lines as NDJSON.
    pub follow: Option<bool>,
}

/// The body of `GET /v1/logs` without `follow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// Lines taken, stored and lost since the server started.
    pub counts: LogCounts,
}

fn logs(state: &ApiState) -> Result<&Arc<Logs>, ControlError> {
    state
        .logs
        .as_ref()
        .ok_or_else(|| ControlError::Unavailable("this server keeps no function logs".into()))
}

pub(crate) async fn get(
    State(state): State<Shared>,
    Query(params): Query<LogParams>,
) -> Result<Response, ControlError> {
    let logs = logs(&state)?.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let since_ms = parse_time(params.since.as_deref().unwrap_or("1h"), now)
        .map_err(|e| ControlError::BadRequest(format!("since: {e}")))?;
    let filter = LogFilter {
        since_ms,
        until_ms: u64::MAX,
        app: params.app,
        function: params.function,
        invocation: params.invocation,
    };
    let limit = params.limit.unwrap_or(200).clamp(1, 10_000);
    // Subscribe before reading the history, so no line falls between the two.
    let live = params.follow.unwrap_or(false).then(|| logs.subscribe());
    let db = logs.db().clone();
    let query = filter.clone();
    let history = tokio::task::spawn_blocking(move || db.query(&query, limit))
        .await
        .map_err(|e| ControlError::Store(e.to_string()))??;
    let Some(live) = live else {
        return Ok(axum::Json(LogsResponse {
            lines: history,
            counts: logs.counts(),
        })
        .into_response());
    };
    // A line written after the subscription may be stored already and in the history too.
    let seen: HashSet<(u64, Arc<str>, String)> = history
        .iter()
        .map(|l| (l.ts_unix_ms, l.request_id.clone(), l.message.clone()))
        .collect();
    let head = futures::stream::iter(history.into_iter().map(ndjson));
    let tail = futures::stream::unfold((live, filter, seen), |(mut live, filter, seen)| async {
        loop {
            match live.recv().await {
                Ok(line) => {
                    let key = (
                        line.ts_unix_ms,
                        line.request_id.clone(),
                        line.message.clone(),
                    );
                    if filter.matches(&line) && !seen.contains(&key) {
                        return Some((ndjson(LogLine::clone(&line)), (live, filter, seen)));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "a log follower fell behind; lines skipped");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let body = Body::from_stream(futures::StreamExt::chain(head, tail));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

fn ndjson(line: LogLine) -> Result<bytes::Bytes, std::io::Error> {
    let mut json = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
    json.push(b'\n');
    Ok(json.into())
}
