//! The access-key API for the S3 endpoint: `POST /v1/keys` issues a key pair (the secret is in
//! that response and nowhere else afterwards), `GET /v1/keys` lists ids, `DELETE
//! /v1/keys/{id}` revokes one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_objstore::{KeyInfo, KeyStore, ObjectError};

use crate::api::ApiState;
use crate::error::ControlError;
use crate::store::DEFAULT_TENANT;

type Shared = Arc<ApiState>;

impl From<ObjectError> for ControlError {
    fn from(e: ObjectError) -> Self {
        Self::Store(e.to_string())
    }
}

fn keys(state: &ApiState) -> Result<&KeyStore, ControlError> {
    state
        .keys
        .as_ref()
        .ok_or_else(|| ControlError::Unavailable("this server has no object store".into()))
}

pub(crate) async fn create(State(state): State<Shared>) -> Result<Response, ControlError> {
    let key = keys(&state)?.create(DEFAULT_TENANT)?;
    tracing::info!(access_key_id = %key.access_key_id, "S3 access key created");
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

pub(crate) async fn list(
    State(state): State<Shared>,
) -> Result<axum::Json<Vec<KeyInfo>>, ControlError> {
    Ok(axum::Json(keys(&state)?.list(DEFAULT_TENANT)?))
}

pub(crate) async fn remove(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ControlError> {
    if keys(&state)?.delete(DEFAULT_TENANT, &id)? {
        tracing::info!(access_key_id = %id, "S3 access key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::NotFound(format!("no access key `{id}`")))
    }
}
