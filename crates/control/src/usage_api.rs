//! The usage API: `GET /metrics` (Prometheus), `GET /v1/usage` (a report grouped by app, function, hour or day, with its
//! cost; JSON or CSV) and `GET /v1/usage/records` (the usage records of single invocations).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use nimbus_metering::export::{parse_time, to_csv};
use nimbus_metering::{
    Filter, GroupBy, Meter, MeterCounts, MeteringError, PriceTable, UsageDb, UsageRecord,
    UsageReport,
};
use serde::{Deserialize, Serialize};

use crate::api::ApiState;
use crate::error::ControlError;

type Shared = Arc<ApiState>;

/// What the usage API reads from.
pub struct UsageService {
    /// The usage store.
    pub db: UsageDb,
    /// The meter writing to it (for its loss counters).
    pub meter: Arc<Meter>,
    /// The prices reports are billed with.
    pub prices: PriceTable,
}

impl From<MeteringError> for ControlError {
    fn from(e: MeteringError) -> Self {
        Self::Store(e.to_string())
    }
}

/// `GET /v1/usage` parameters.
#[derive(Debug, Deserialize)]
pub struct UsageParams {
    /// Start: a duration back from now (`24h`, `7d`) or ms since the epoch (default `24h`).
    pub since: Option<String>,
    /// End (exclusive), in the same forms (default: now).
    pub until: Option<String>,
    /// `app`, `function` (default), `hour` or `day`.
    pub by: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// `GET /v1/usage/records` parameters.
#[derive(Debug, Deserialize)]
pub struct RecordParams {
    /// Start (default `1h`).
    pub since: Option<String>,
    /// End (exclusive; default now).
    pub until: Option<String>,
    /// Only this app.
    pub app: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only the runs of this invocation id (or the run with this request id).
    pub id: Option<String>,
    /// At most this many records (default 100, at most 10,000).
    pub limit: Option<usize>,
}

/// The body of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageResponse {
    /// The report.
    #[serde(flatten)]
    pub report: UsageReport,
    /// How many records the meter took, wrote and lost since the server started: a report
    /// is short by `lost` invocations (a full disk, say).
    pub metering: MeterCounts,
}

/// The body of `GET /v1/usage/records`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordsResponse {
    /// The records, oldest first.
    pub records: Vec<UsageRecord>,
}

fn service(state: &ApiState) -> Result<&UsageService, ControlError> {
    state
        .usage
        .as_ref()
        .ok_or_else(|| ControlError::Unavailable("this server does not meter usage".into()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn range(
    since: Option<&str>,
    until: Option<&str>,
    default_since: &str,
) -> Result<(u64, u64), ControlError> {
    let now = now_ms();
    let since = parse_time(since.unwrap_or(default_since), now)
        .map_err(|e| ControlError::BadRequest(format!("since: {e}")))?;
    let until = match until {
        Some(u) => {
            parse_time(u, now).map_err(|e| ControlError::BadRequest(format!("until: {e}")))?
        }
        // Records are stamped when their invocation started: include the current hour whole.
        None => u64::MAX,
    };
    if since >= until {
        return Err(ControlError::BadRequest(
            "since must be before until".into(),
        ));
    }
    Ok((since, until))
}

pub(crate) async fn report(
    State(state): State<Shared>,
    Query(params): Query<UsageParams>,
) -> Result<Response, ControlError> {
    let usage = service(&state)?;
    let by: GroupBy = params
        .by
        .as_deref()
        .unwrap_or("function")
        .parse()
        .map_err(ControlError::BadRequest)?;
    let (since_ms, until_ms) = range(params.since.as_deref(), params.until.as_deref(), "24h")?;
    let filter = Filter {
        since_ms,
        until_ms,
        tenant: None,
        app: params.app,
        function: params.function,
    };
    let db = usage.db.clone();
    let rollups = tokio::task::spawn_blocking(move || db.rollups(&filter))
        .await
        .map_err(|e| ControlError::Store(e.to_string()))??;
    let shown_until = until_ms.min(now_ms());
    let report = UsageReport::build(&rollups, by, since_ms, shown_until, &usage.prices);
    match params.format.as_deref().unwrap_or("json") {
        "json" => Ok(axum::Json(UsageResponse {
            report,
            metering: usage.meter.counts(),
        })
        .into_response()),
        "csv" => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response()),
        other => Err(ControlError::BadRequest(format!(
            "unknown format `{other}` (expected json or csv)"
        ))),
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub(crate) async fn metrics(State(state): State<Shared>) -> Result<Response, ControlError> {
    let metrics = state
        .metrics
        .as_ref()
        .ok_or_else(|| ControlError::Unavailable("this server does not collect metrics".into()))?;
    let mut snapshot = state.platform.metrics_snapshot().await;
    snapshot.records = state.usage.as_ref().map(|u| u.meter.counts());
    let text = metrics
        .render(&snapshot)
        .map_err(|e| ControlError::Store(format!("encoding metrics: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, nimbus_metering::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response())
}

pub(crate) async fn records(
    State(state): State<Shared>,
    Query(params): Query<RecordParams>,
) -> Result<axum::Json<RecordsResponse>, ControlError> {
    let usage = service(&state)?;
    let (since_ms, until_ms) = range(params.since.as_deref(), params.until.as_deref(), "1h")?;
    let limit = params.limit.unwrap_or(100).clamp(1, 10_000);
    let filter = Filter {
        since_ms,
        until_ms,
        tenant: None,
        app: params.app,
        function: params.function,
    };
    let db = usage.db.clone();
    let id = params.id;
    let records = tokio::task::spawn_blocking(move || db.records(&filter, id.as_deref(), limit))
        .await
        .map_err(|e| ControlError::Store(e.to_string()))??;
    Ok(axum::Json(RecordsResponse { records }))
}
