//! The queue REST API, under `/v1/apps/{app}/queues`: list with stats, send, peek, redrive.
//!
//! Only queues the app's active version declares (`[[queue]]`) exist here. A send takes the raw
//! body and its `Content-Type`; a CloudEvent can be sent in either HTTP content mode — binary
//! (`ce-id`, `ce-source`, `ce-type`, … headers) or structured (`Content-Type:
//! application/cloudevents+json`) — and is delivered to the consumer as that event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_manifest::App;
use nimbus_queue::{MAX_DELAY, NewMessage, QueueBackend, QueueId};
use nimbus_triggers::cloud;
use serde::Deserialize;

use crate::api::ApiState;
use crate::error::ControlError;
use crate::store::DEFAULT_TENANT;
use crate::types::{PeekedMessage, QueueInfo, RedriveRequest, RedriveResponse, SentMessage};

type Shared = Arc<ApiState>;

/// Default and largest page of a peek.
const DEFAULT_PEEK: usize = 10;
const MAX_PEEK: usize = 100;
/// Most messages one redrive moves.
const MAX_REDRIVE: usize = 10_000;

/// `?delay_ms=` of a send.
#[derive(Debug, Deserialize)]
pub(crate) struct SendParams {
    delay_ms: Option<u64>,
}

/// `?limit=` of a peek.
#[derive(Debug, Deserialize)]
pub(crate) struct PeekParams {
    limit: Option<usize>,
}

fn backend(state: &ApiState) -> Result<&Arc<dyn QueueBackend>, ControlError> {
    state
        .platform
        .queues()
        .ok_or_else(|| ControlError::Unavailable("this server runs without queues".into()))
}

/// The active version of `app` and the declaration of `queue` in it.
fn declared(
    state: &ApiState,
    app: &str,
    queue: &str,
) -> Result<(App, nimbus_manifest::Queue), ControlError> {
    let app = state.platform.active_app(app)?;
    let decl = app
        .queues
        .iter()
        .find(|q| q.name == queue)
        .cloned()
        .ok_or_else(|| {
            ControlError::NotFound(format!(
                "app `{}` declares no queue `{queue}` (declared: {})",
                app.name,
                names(&app)
            ))
        })?;
    Ok((app, decl))
}

fn names(app: &App) -> String {
    if app.queues.is_empty() {
        return "none".into();
    }
    app.queues
        .iter()
        .map(|q| q.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn info(
    queues: &dyn QueueBackend,
    app: &App,
    decl: &nimbus_manifest::Queue,
) -> Result<QueueInfo, ControlError> {
    let stats = queues
        .stats(&QueueId::new(DEFAULT_TENANT, &app.name, &decl.name))
        .await?;
    let trigger = app.triggers.queue.iter().find(|t| t.queue == decl.name);
    Ok(QueueInfo {
        name: decl.name.clone(),
        max_message_bytes: decl.max_message_bytes,
        max_messages: decl.max_messages,
        ready: stats.ready,
        delayed: stats.delayed,
        in_flight: stats.in_flight,
        consumer: trigger.map(|t| t.function.clone()),
        dead_letter_queue: trigger.and_then(|t| t.dead_letter_queue.clone()),
        dead_letter_for: app
            .triggers
            .queue
            .iter()
            .filter(|t| t.dead_letter_queue.as_deref() == Some(decl.name.as_str()))
            .map(|t| t.queue.clone())
            .collect(),
    })
}

pub(crate) async fn list(
    State(state): State<Shared>,
    Path(app): Path<String>,
) -> Result<axum::Json<Vec<QueueInfo>>, ControlError> {
    let queues = backend(&state)?;
    let app = state.platform.active_app(&app)?;
    let mut out = Vec::with_capacity(app.queues.len());
    for decl in &app.queues {
        out.push(info(queues.as_ref(), &app, decl).await?);
    }
    Ok(axum::Json(out))
}

pub(crate) async fn get(
    State(state): State<Shared>,
    Path((app, queue)): Path<(String, String)>,
) -> Result<axum::Json<QueueInfo>, ControlError> {
    let queues = backend(&state)?;
    let (app, decl) = declared(&state, &app, &queue)?;
    Ok(axum::Json(info(queues.as_ref(), &app, &decl).await?))
}

pub(crate) async fn send(
    State(state): State<Shared>,
    Path((app, queue)): Path<(String, String)>,
    Query(params): Query<SendParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<SentMessage>), ControlError> {
    let queues = backend(&state)?;
    let (app, decl) = declared(&state, &app, &queue)?;
    let limit = decl.max_message_bytes as usize;
    let body = axum::body::to_bytes(body, limit + 1).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            ControlError::TooLarge(format!(
                "message exceeds queue `{queue}`'s limit of {limit} bytes (max_message_bytes)"
            ))
        } else {
            ControlError::BadRequest(format!("reading the request body: {inner}"))
        }
    })?;
    let delay = Duration::from_millis(params.delay_ms.unwrap_or(0));
    if delay > MAX_DELAY {
        return Err(ControlError::BadRequest(format!(
            "delay_ms must be at most {} (12 hours)",
            MAX_DELAY.as_millis()
        )));
    }
    let (attributes, body) = message_from_http(&headers, body)?;
    if body.len() > limit {
        return Err(ControlError::TooLarge(format!(
            "message data exceeds queue `{queue}`'s limit of {limit} bytes (max_message_bytes)"
        )));
    }
    let id = queues
        .send(
            &QueueId::new(DEFAULT_TENANT, &app.name, &decl.name),
            NewMessage {
                body,
                attributes,
                delay,
                capacity: Some(decl.max_messages as usize),
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SentMessage { id })))
}

/// The attributes and body of a message sent over HTTP: a CloudEvent in structured or binary
/// mode, or a plain body with its content type.
fn message_from_http(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Vec<(String, String)>, Bytes), ControlError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = header(header::CONTENT_TYPE.as_str());
    if content_type.is_some_and(|ct| ct.starts_with("application/cloudevents+json")) {
        let event: cloudevents::Event = serde_json::from_slice(&body).map_err(|e| {
            ControlError::BadRequest(format!("not a valid structured-mode CloudEvent: {e}"))
        })?;
        return Ok(cloud::to_message(event));
    }
    if let Some(version) = header("ce-specversion") {
        if version != "1.0" {
            return Err(ControlError::BadRequest(format!(
                "unsupported CloudEvents specversion `{version}` (1.0 is)"
            )));
        }
        for required in ["ce-id", "ce-source", "ce-type"] {
            if header(required).is_none_or(str::is_empty) {
                return Err(ControlError::BadRequest(format!(
                    "a binary-mode CloudEvent needs the `{required}` header"
                )));
            }
        }
    }
    let mut attributes = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name.starts_with(cloud::CE_PREFIX) && name != "ce-specversion" {
            let value = value.to_str().map_err(|_| {
                ControlError::BadRequest(format!("header `{name}` is not visible ASCII"))
            })?;
            attributes.push((name.to_owned(), value.to_owned()));
        }
    }
    if let Some(ct) = content_type {
        attributes.push((cloud::CONTENT_TYPE.to_owned(), ct.to_owned()));
    }
    Ok((attributes, body))
}

pub(crate) async fn peek(
    State(state): State<Shared>,
    Path((app, queue)): Path<(String, String)>,
    Query(params): Query<PeekParams>,
) -> Result<axum::Json<Vec<PeekedMessage>>, ControlError> {
    let queues = backend(&state)?;
    let (app, decl) = declared(&state, &app, &queue)?;
    let limit = params.limit.unwrap_or(DEFAULT_PEEK);
    if limit == 0 || limit > MAX_PEEK {
        return Err(ControlError::BadRequest(format!(
            "limit must be between 1 and {MAX_PEEK} (got {limit})"
        )));
    }
    let messages = queues
        .peek(&QueueId::new(DEFAULT_TENANT, &app.name, &decl.name), limit)
        .await?;
    Ok(axum::Json(
        messages
            .into_iter()
            .map(|m| PeekedMessage {
                body: String::from_utf8(m.body.to_vec()).ok(),
                body_base64: base64::engine::general_purpose::STANDARD.encode(&m.body),
                id: m.id,
                attributes: m.attributes,
                sent_at_ms: m.sent_at_ms,
                attempts: m.attempts,
                last_error: m.last_error,
                dead_lettered_from: m.dead_lettered_from,
            })
            .collect(),
    ))
}

pub(crate) async fn redrive(
    State(state): State<Shared>,
    Path((app, queue)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<RedriveResponse>, ControlError> {
    let queues = backend(&state)?;
    let (app, decl) = declared(&state, &app, &queue)?;
    let request: RedriveRequest = if body.is_empty() {
        RedriveRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ControlError::BadRequest(format!("invalid redrive request: {e}")))?
    };
    let to = match request.to {
        Some(to) => declared(&state, &app.name, &to)?.1.name,
        None => {
            let sources: Vec<&str> = app
                .triggers
                .queue
                .iter()
                .filter(|t| t.dead_letter_queue.as_deref() == Some(decl.name.as_str()))
                .map(|t| t.queue.as_str())
                .collect();
            match sources.as_slice() {
                [one] => (*one).to_owned(),
                [] => {
                    return Err(ControlError::BadRequest(format!(
                        "queue `{queue}` is no trigger's dead_letter_queue; say where to move its messages with \"to\""
                    )));
                }
                many => {
                    return Err(ControlError::BadRequest(format!(
                        "queue `{queue}` is the dead_letter_queue of {}; say which with \"to\"",
                        many.join(", ")
                    )));
                }
            }
        }
    };
    if to == decl.name {
        return Err(ControlError::BadRequest(
            "cannot redrive a queue into itself".into(),
        ));
    }
    let limit = request.limit.unwrap_or(MAX_REDRIVE).clamp(1, MAX_REDRIVE);
    let moved = queues
        .redrive(
            &QueueId::new(DEFAULT_TENANT, &app.name, &decl.name),
            &QueueId::new(DEFAULT_TENANT, &app.name, &to),
            limit,
        )
        .await?;
    Ok(axum::Json(RedriveResponse { moved, to }))
}
