//! The key-value REST API: `/v1/kv/{store}` (list) and `/v1/kv/{store}/{key}` (get, put,
//! delete). Values travel as raw bytes; keys may contain `/`.
//!
//! Stores belong to the tenant, so the same keys are seen by every function that declares the
//! store and by this API.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_kv::{KvBackend, MAX_VALUE_BYTES, StoreId};
use serde::Deserialize;

use crate::api::ApiState;
use crate::error::ControlError;
use crate::store::DEFAULT_TENANT;
use crate::types::KeyList;

/// Default and largest page of a key listing.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

type Shared = Arc<ApiState>;

/// `?ttl=` of a PUT.
#[derive(Debug, Deserialize)]
pub(crate) struct PutParams {
    /// Seconds until the key expires.
    ttl: Option<u64>,
}

/// `?prefix=&cursor=&limit=` of a listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn store_id(store: &str) -> Result<StoreId, ControlError> {
    nimbus_manifest::check_resource_name(store)
        .map_err(|m| ControlError::BadRequest(format!("store name: {m}")))?;
    Ok(StoreId::new(DEFAULT_TENANT, store))
}

/// A key addressed in the URL path. Keys with `.` or `..` segments are refused, raw or
/// percent-encoded (the path is decoded before this): clients and proxies resolve such
/// segments, so `/v1/kv/a/../b/k` would reach store `b` — the request could not mean what it
/// says.
fn path_key(key: &str) -> Result<&str, ControlError> {
    if key.split('/').any(|part| part == "." || part == "..") {
        return Err(ControlError::BadRequest(format!(
            "key `{key}` has a `.` or `..` segment, which the REST API refuses: URL clients \
             resolve them to another path"
        )));
    }
    Ok(key)
}

fn backend(state: &ApiState) -> &Arc<dyn KvBackend> {
    &state.kv
}

pub(crate) async fn list(
    State(state): State<Shared>,
    Path(store): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<KeyList>, ControlError> {
    let id = store_id(&store)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ControlError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT} (got {limit})"
        )));
    }
    let page = backend(&state)
        .list_keys(&id, &params.prefix, params.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(KeyList {
        keys: page.keys,
        cursor: page.cursor,
    }))
}

pub(crate) async fn get(
    State(state): State<Shared>,
    Path((store, key)): Path<(String, String)>,
) -> Result<Response, ControlError> {
    let id = store_id(&store)?;
    let key = path_key(&key)?;
    match backend(&state).get(&id, key).await? {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ControlError::NotFound(format!(
            "no key `{key}` in store `{store}`"
        ))),
    }
}

pub(crate) async fn put(
    State(state): State<Shared>,
    Path((store, key)): Path<(String, String)>,
    Query(params): Query<PutParams>,
    body: Body,
) -> Result<StatusCode, ControlError> {
    let id = store_id(&store)?;
    let key = path_key(&key)?;
    nimbus_kv::check(key, None)?;
    let ttl = match params.ttl {
        Some(0) => {
            return Err(ControlError::BadRequest(
                "ttl must be at least 1 second".into(),
            ));
        }
        other => other.map(Duration::from_secs),
    };
    // Read one byte past the limit, so an oversized value is told apart from one at the limit
    // without buffering more than that.
    let value = axum::body::to_bytes(body, MAX_VALUE_BYTES + 1)
        .await
        .map_err(|e| {
            let inner = e.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                ControlError::TooLarge(format!(
                    "value exceeds the limit of {MAX_VALUE_BYTES} bytes"
                ))
            } else {
                ControlError::BadRequest(format!("reading the request body: {inner}"))
            }
        })?;
    backend(&state).set(&id, key, value, ttl).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(state): State<Shared>,
    Path((store, key)): Path<(String, String)>,
) -> Result<StatusCode, ControlError> {
    let id = store_id(&store)?;
    let key = path_key(&key)?;
    if backend(&state).delete(&id, key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::NotFound(format!(
            "no key `{key}` in store `{store}`"
        )))
    }
}
