//! Asynchronous invocation over REST: `POST /v1/apps/{app}/functions/{function}/invocations`
//! accepts at once (202 with the invocation id) and `GET /v1/invocations/{id}` reports status
//! and result. See [`nimbus_triggers::invoke`] for the semantics.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use nimbus_queue::MAX_MESSAGE_BYTES;
use nimbus_triggers::invoke::{AsyncRequest, InvocationRecord, SubmitError};
use serde::Deserialize;

use crate::api::ApiState;
use crate::error::ControlError;
use crate::store::DEFAULT_TENANT;
use crate::types::InvocationAccepted;

type Shared = Arc<ApiState>;

/// `?path=&method=` of an invocation of an HTTP function.
#[derive(Debug, Deserialize)]
pub(crate) struct InvokeParams {
    path: Option<String>,
    method: Option<String>,
}

fn invocations(
    state: &ApiState,
) -> Result<&Arc<nimbus_triggers::invoke::Invocations>, ControlError> {
    state.platform.invocations().ok_or_else(|| {
        ControlError::Unavailable("this server runs without asynchronous invocation".into())
    })
}

pub(crate) async fn submit(
    State(state): State<Shared>,
    Path((app, function)): Path<(String, String)>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<InvocationAccepted>), ControlError> {
    let invocations = invocations(&state)?;
    let manifest = state.platform.active_app(&app)?;
    if !manifest.functions.iter().any(|f| f.name == function) {
        return Err(ControlError::NotFound(format!(
            "app `{app}` has no function `{function}`"
        )));
    }
    if let Some(path) = &params.path
        && !path.starts_with('/')
    {
        return Err(ControlError::BadRequest(format!(
            "path must start with `/` (got `{path}`)"
        )));
    }
    let payload = axum::body::to_bytes(body, MAX_MESSAGE_BYTES + 1)
        .await
        .map_err(|e| {
            let inner = e.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                ControlError::TooLarge(format!(
                    "an asynchronous invocation's payload is at most {MAX_MESSAGE_BYTES} bytes"
                ))
            } else {
                ControlError::BadRequest(format!("reading the request body: {inner}"))
            }
        })?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = AsyncRequest {
        payload,
        content_type: header(header::CONTENT_TYPE.as_str()),
        method: params.method,
        path: params.path,
        idempotency_key: header("idempotency-key"),
    };
    let (record, deduplicated) = invocations
        .submit(DEFAULT_TENANT, &app, &function, request)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(m) => ControlError::BadRequest(m),
            SubmitError::Kv(e) => e.into(),
            SubmitError::Queue(e) => e.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(InvocationAccepted {
            record,
            deduplicated,
        }),
    ))
}

pub(crate) async fn get(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<axum::Json<InvocationRecord>, ControlError> {
    invocations(&state)?
        .get(&id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ControlError::NotFound(format!("no invocation `{id}`")))
}
