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
        .fallback(|| async { ControlError::NotFound("no such API path".into()) })
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// Every error leaves as the documented JSON body. axum's own rejections — a path or query
/// value that does not parse, a method a path does not have, a body over a limit — are plain
/// text; they are rewritten here, with the code of their status (and 422 answered as 400, as
/// every other malformed request is). Headers such as `Allow` and `Retry-After` are kept.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let status = match status {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_owned(),
        false => text,
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message,
        },
    };
    let mut rewritten = (status, axum::Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
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

    /// docs/openapi.yaml parses as YAML and describes exactly the routes and methods
    /// registered in this file; every authenticated operation documents 401, and every one
    /// that takes path or query parameters documents 400.
    #[test]
    fn openapi_describes_every_route() {
        use std::collections::{BTreeMap, BTreeSet};
        let source = include_str!("api.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap()];
        let spec: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../docs/openapi.yaml"))
                .expect("docs/openapi.yaml is not valid YAML");

        let mut registered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let calls: Vec<&str> = source.split(".route(").skip(1).collect();
        for call in calls {
            // Up to the next builder call that is not a method, or the end of `router`.
            let end = [".route_layer(", ".merge(", "\n}"]
                .iter()
                .filter_map(|stop| call.find(stop))
                .min()
                .unwrap_or(call.len());
            let call = &call[..end];
            let Some(rest) = call.trim_start().strip_prefix('"') else {
                continue;
            };
            let path = rest[..rest.find('"').unwrap()].replace("{*", "{");
            let methods = registered.entry(path).or_default();
            for method in ["get", "put", "post", "delete", "head"] {
                if call.contains(&format!("{method}(")) {
                    methods.insert(method.to_owned());
                }
            }
        }
        assert!(registered.len() >= 20, "{registered:?}");

        let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, item) in spec["paths"].as_mapping().unwrap() {
            let path = path.as_str().unwrap().to_owned();
            let shared = item["parameters"]
                .as_sequence()
                .is_some_and(|p| !p.is_empty());
            for (method, op) in item.as_mapping().unwrap() {
                let method = method.as_str().unwrap();
                if method == "parameters" || method == "summary" {
                    continue;
                }
                documented
                    .entry(path.clone())
                    .or_default()
                    .insert(method.to_owned());
                let responses = op["responses"].as_mapping().unwrap();
                let has = |status: &str| responses.contains_key(status);
                if path != "/v1/health" {
                    assert!(has("401"), "{method} {path} does not document 401");
                }
                let own = op["parameters"]
                    .as_sequence()
                    .is_some_and(|p| !p.is_empty());
                if (shared || own) && method != "head" {
                    assert!(has("400"), "{method} {path} does not document 400");
                }
            }
        }
        assert_eq!(registered, documented);
    }
}
