//! The control API: versioned REST + JSON under `/v1`, described by `docs/openapi.yaml`.
//!
//! Every route but `/v1/health` requires `Authorization: Bearer <token>`. Errors are
//! `{"error": {"code", "message"}}` with the status of their [`ControlError`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use bytes::Bytes;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::error::ControlError;
use crate::platform::Platform;
use crate::token::TokenCheck;
use crate::types::{DeployRequest, ErrorBody, ErrorDetail, FunctionStatus, Info, RollbackRequest};
use crate::{invoke_api, keys_api, kv_api, logs_api, queue_api, secrets_api, usage_api};

/// Shared state of the API handlers.
pub struct ApiState {
    /// The platform being controlled.
    pub platform: Arc<Platform>,
    /// The token check.
    pub token: TokenCheck,
    /// Static info (version, gateway URL).
    pub info: Info,
    /// The key-value backend behind `/v1/kv`.
    pub kv: Arc<dyn nimbus_kv::KvBackend>,
    /// The S3 access keys behind `/v1/keys` (`None`: no object store).
    pub keys: Option<nimbus_objstore::KeyStore>,
    /// The usage store behind `/v1/usage` (`None`: nothing is metered).
    pub usage: Option<crate::usage_api::UsageService>,
    /// The metrics behind `/metrics` (`None`: none are collected).
    pub metrics: Option<Arc<nimbus_metering::Metrics>>,
    /// The function logs behind `/v1/logs` (`None`: none are kept).
    pub logs: Option<Arc<nimbus_logs::Logs>>,
}

type Shared = Arc<ApiState>;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
            },
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, Self::Busy(_)) {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// The API's router.
pub fn router(state: Shared) -> Router {
    let authed = Router::new()
        .route("/v1/info", get(info))
        .route("/v1/blobs/{digest}", put(put_blob).head(head_blob))
        .route("/v1/apps", get(list_apps).post(deploy))
        .route("/v1/apps/{app}", get(get_app).delete(delete_app))
        .route("/v1/apps/{app}/functions", get(list_functions))
        .route("/v1/apps/{app}/rollback", post(rollback))
        .route("/v1/apps/{app}/secrets", get(secrets_api::list))
        .route(
            "/v1/apps/{app}/secrets/{name}",
            put(secrets_api::set).delete(secrets_api::remove),
        )
        .route(
            "/v1/apps/{app}/functions/{function}/invocations",
            post(invoke_api::submit),
        )
        .route("/v1/invocations/{id}", get(invoke_api::get))
        .route("/v1/apps/{app}/queues", get(queue_api::list))
        .route("/v1/apps/{app}/queues/{queue}", get(queue_api::get))
        .route(
            "/v1/apps/{app}/queues/{queue}/messages",
            get(queue_api::peek).post(queue_api::send),
        )
        .route(
            "/v1/apps/{app}/queues/{queue}/redrive",
            post(queue_api::redrive),
        )
        .route("/metrics", get(usage_api::metrics))
        .route("/v1/logs", get(logs_api::get))
        .route("/v1/usage", get(usage_api::report))
        .route("/v1/usage/records", get(usage_api::records))
        .route("/v1/keys", get(keys_api::list).post(keys_api::create))
        .route("/v1/keys/{id}", delete(keys_api::remove))
        .route("/v1/kv/{store}", get(kv_api::list))
        .route(
            "/v1/kv/{store}/{*key}",
            get(kv_api::get).put(kv_api::put).delete(kv_api::delete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1/health", get(|| async { "ok\n" }))
        .merge(authed)
        .with_state(state)
}

/// Serves the API on `listener` under the listener settings `config` until `shutdown`
/// resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    config: nimbus_serve::ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router(state);
    let connection = move |stream, _peer| {
        (
            stream,
            hyper_util::service::TowerToHyperService::new(router.clone()),
        )
    };
    nimbus_serve::serve("control API", listener, &config, connection, shutdown).await
}

async fn require_token(
    State(state): State<Shared>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if state.token.verify(token) => next.run(request).await,
        _ => ControlError::Unauthorized.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1), and one or more spaces may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|e| ControlError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn info(State(state): State<Shared>) -> axum::Json<Info> {
    axum::Json(state.info.clone())
}

async fn head_blob(
    State(state): State<Shared>,
    Path(digest): Path<String>,
) -> Result<StatusCode, ControlError> {
    if state.platform.blobs().contains(&digest)? {
        Ok(StatusCode::OK)
    } else {
        Ok(StatusCode::NOT_FOUND)
    }
}

async fn put_blob(
    State(state): State<Shared>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<StatusCode, ControlError> {
    let blobs = state.platform.blobs();
    if blobs.contains(&digest)? {
        return Ok(StatusCode::OK);
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    blobs.put(&digest, Box::pin(stream)).await?;
    Ok(StatusCode::CREATED)
}

async fn list_apps(State(state): State<Shared>) -> Result<Response, ControlError> {
    Ok(axum::Json(state.platform.list()?).into_response())
}

async fn deploy(State(state): State<Shared>, body: Bytes) -> Result<Response, ControlError> {
    let request: DeployRequest = json(&body)?;
    let response = state.platform.deploy(request).await?;
    Ok((StatusCode::CREATED, axum::Json(response)).into_response())
}

async fn get_app(
    State(state): State<Shared>,
    Path(app): Path<String>,
) -> Result<Response, ControlError> {
    Ok(axum::Json(state.platform.get(&app)?).into_response())
}

async fn list_functions(
    State(state): State<Shared>,
    Path(app): Path<String>,
) -> Result<axum::Json<Vec<FunctionStatus>>, ControlError> {
    Ok(axum::Json(state.platform.get(&app)?.functions))
}

async fn delete_app(
    State(state): State<Shared>,
    Path(app): Path<String>,
) -> Result<StatusCode, ControlError> {
    state.platform.delete(&app).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rollback(
    State(state): State<Shared>,
    Path(app): Path<String>,
    body: Bytes,
) -> Result<Response, ControlError> {
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        json(&body)?
    };
    Ok(axum::Json(state.platform.rollback(&app, request.version).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_auth_scheme_is_case_insensitive() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "bEaReR t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        assert_eq!(bearer_token("Basic t0k"), None);
        assert_eq!(bearer_token("Bearert0k"), None);
        assert_eq!(bearer_token("t0k"), None);
    }

    /// Every route registered in this file is described in docs/openapi.yaml, and vice versa.
    #[test]
    fn openapi_describes_every_route() {
        let source = include_str!("api.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
        let spec = include_str!("../../../docs/openapi.yaml");
        let routes: Vec<&str> = source
            .match_indices(".route(")
            .filter_map(|(i, m)| {
                let rest = source[i + m.len()..].trim_start().strip_prefix('"')?;
                Some(&rest[..rest.find('"').unwrap()])
            })
            .collect();
        assert!(routes.len() >= 7, "{routes:?}");
        let documented: Vec<&str> = spec
            .lines()
            .filter(|l| l.starts_with("  /"))
            .map(|l| l.trim().trim_end_matches(':'))
            .collect();
        for route in &routes {
            let path = route.replace("{*", "{");
            let path = path.as_str();
            assert!(
                documented.contains(&path),
                "{route} is not in docs/openapi.yaml"
            );
        }
        assert_eq!(
            routes.len(),
            documented.len(),
            "{routes:?} vs {documented:?}"
        );
    }
}
