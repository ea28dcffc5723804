//! The secrets REST API: `/v1/apps/{app}/secrets` (list names) and
//! `/v1/apps/{app}/secrets/{name}` (set, remove). Values go in and never come out: there is no
//! way to read a secret back through the API.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use nimbus_secrets::{MAX_SECRET_BYTES, SecretError, SecretInfo, SecretStore};

use crate::api::ApiState;
use crate::error::ControlError;
use crate::store::DEFAULT_TENANT;

type Shared = Arc<ApiState>;

impl From<SecretError> for ControlError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::InvalidName(_) | SecretError::InvalidValue(_) => {
                Self::BadRequest(e.to_string())
            }
            SecretError::Key(_) | SecretError::Decrypt(_) | SecretError::Store(_) => {
                Self::Store(e.to_string())
            }
            SecretError::Io { context, source } => Self::Io { context, source },
        }
    }
}

fn store(state: &ApiState, app: &str) -> Result<Arc<SecretStore>, ControlError> {
    nimbus_manifest::check_resource_name(app)
        .map_err(|m| ControlError::BadRequest(format!("app name: {m}")))?;
    state
        .platform
        .secrets()
        .cloned()
        .ok_or_else(|| ControlError::Unavailable("this server has no secret store".into()))
}

pub(crate) async fn list(
    State(state): State<Shared>,
    Path(app): Path<String>,
) -> Result<axum::Json<Vec<SecretInfo>>, ControlError> {
    Ok(axum::Json(store(&state, &app)?.list(DEFAULT_TENANT, &app)?))
}

pub(crate) async fn set(
    State(state): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ControlError> {
    let secrets = store(&state, &app)?;
    let value = axum::body::to_bytes(body, MAX_SECRET_BYTES + 1)
        .await
        .map_err(|_| {
            ControlError::TooLarge(format!(
                "secret values are at most {MAX_SECRET_BYTES} bytes"
            ))
        })?;
    let value = String::from_utf8(value.to_vec())
        .map_err(|_| ControlError::BadRequest("secret values must be UTF-8 text".into()))?;
    secrets.set(DEFAULT_TENANT, &app, &name, &value)?;
    tracing::info!(app = %app, secret = %name, "secret set");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn remove(
    State(state): State<Shared>,
    Path((app, name)): Path<(String, String)>,
) -> Result<StatusCode, ControlError> {
    if store(&state, &app)?.remove(DEFAULT_TENANT, &app, &name)? {
        tracing::info!(app = %app, secret = %name, "secret removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::NotFound(format!(
            "app `{app}` has no secret `{name}`"
        )))
    }
}
