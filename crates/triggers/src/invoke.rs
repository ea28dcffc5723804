//! Asynchronous invocation (Lambda's "Event" mode): a request is accepted at once with an
//! invocation id, queued durably, run later with retries, and its status and result kept for
//! [`RECORD_TTL`].
//!
//! - **Records** live in the platform's key-value backend (store `invocations` of the internal
//!   tenant `_nimbus`, key = the id): status, attempts, the result (HTTP status and up to
//!   [`MAX_RESULT_BYTES`] of body for HTTP functions) or the last error.
//! - **Queueing**: each function has an internal queue `_invoke.<function>`; the message carries
//!   the payload and, as attributes, the invocation id and the HTTP method and path.
//! - **Idempotency**: a request with an idempotency key is run once per key and function within
//!   [`IDEMPOTENCY_WINDOW`]; a repeat gets the first invocation's id back. The key is claimed
//!   with compare-and-swap (store `idempotency`), so concurrent repeats cannot both run.
//! - **Retries** follow `[function.async]`: `max_attempts`, backoff from `retry_backoff_ms`.
//!   An event function fails an attempt with `err`, a trap or a timeout; an HTTP function also
//!   with a 5xx status. Outcomes go to the `on_success` / `on_failure` queues, if set, as the
//!   invocation record in JSON, sent before the settled record is stored: once a client sees an
//!   invocation settled, its outcome message is already in the destination queue.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use nimbus_engine::{EventFunction, HttpFunction, Invocation, TriggerKind};
use nimbus_kv::{KvBackend, KvError, StoreId};
use nimbus_manifest::AsyncConfig;
use nimbus_queue::{Delivery, NewMessage, QueueBackend, QueueError, QueueId};
use serde::{Deserialize, Serialize};

use crate::cloud;
use crate::cron::STATE_TENANT;
use crate::queue_worker::Deliver;

/// Store of invocation records.
pub const INVOCATIONS_STORE: &str = "invocations";
/// Store of claimed idempotency keys.
pub const IDEMPOTENCY_STORE: &str = "idempotency";
/// How long an idempotency key dedupes repeats.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long a record is kept.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most bytes of an HTTP function's response body kept as the result.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;
/// Type of the CloudEvent an event function receives for an asynchronous invocation.
pub const INVOKE_TYPE: &str = "dev.nimbus.invoke";
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

const METHOD_ATTR: &str = "x-nimbus-method";
const PATH_ATTR: &str = "x-nimbus-path";

/// Where an invocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationStatus {
    /// Accepted, not started.
    Queued,
    /// An attempt is running, or failed and will be retried.
    Running,
    /// Done: the function succeeded.
    Succeeded,
    /// Done: every attempt failed.
    Failed,
}

/// The stored record of one asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Invocation id (UUIDv7).
    pub id: String,
    /// App.
    pub app: String,
    /// Function.
    pub function: String,
    /// Status.
    pub status: InvocationStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Accepted at, Unix ms.
    pub created_at_ms: u64,
    /// Last change, Unix ms.
    pub updated_at_ms: u64,
    /// HTTP functions: the response status of the successful attempt.
    pub result_status: Option<u16>,
    /// The result body, if UTF-8 (HTTP functions).
    pub result: Option<String>,
    /// The result body, base64 (HTTP functions).
    pub result_base64: Option<String>,
    /// The error of the last failed attempt.
    pub error: Option<String>,
}

/// An asynchronous invocation request.
#[derive(Debug, Clone, Default)]
pub struct AsyncRequest {
    /// Body (HTTP functions) or event data (event functions).
    pub payload: Bytes,
    /// Its media type.
    pub content_type: Option<String>,
    /// HTTP method for HTTP functions (default POST).
    pub method: Option<String>,
    /// HTTP path for HTTP functions (default `/`).
    pub path: Option<String>,
    /// Dedupes repeats within [`IDEMPOTENCY_WINDOW`].
    pub idempotency_key: Option<String>,
}

/// Why an invocation could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The record store failed.
    #[error("invocation records: {0}")]
    Kv(#[from] KvError),
    /// The queue refused or failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The internal queue of `function`'s asynchronous invocations.
pub fn invoke_queue(tenant: &str, app: &str, function: &str) -> QueueId {
    QueueId::new(tenant, app, &format!("_invoke.{function}"))
}

/// Accepts, records and reports asynchronous invocations.
pub struct Invocations {
    state: Arc<dyn KvBackend>,
    queues: Arc<dyn QueueBackend>,
}

#[derive(Serialize, Deserialize)]
struct Claim {
    id: String,
    at_ms: u64,
}

impl Invocations {
    /// Records in `state`, queues in `queues`.
    pub fn new(state: Arc<dyn KvBackend>, queues: Arc<dyn QueueBackend>) -> Self {
        Self { state, queues }
    }

    fn records() -> StoreId {
        StoreId::new(STATE_TENANT, INVOCATIONS_STORE)
    }

    /// The record of `id`.
    pub async fn get(&self, id: &str) -> Result<Option<InvocationRecord>, KvError> {
        let Some(bytes) = self.state.get(&Self::records(), id).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KvError::Backend(format!("corrupt invocation record {id}: {e}")))
    }

    async fn put(&self, record: &InvocationRecord) -> Result<(), KvError> {
        let json = serde_json::to_vec(record)
            .map_err(|e| KvError::Backend(format!("encoding an invocation record: {e}")))?;
        self.state
            .set(
                &Self::records(),
                &record.id,
                Bytes::from(json),
                Some(RECORD_TTL),
            )
            .await
    }

    /// Claims `key` for `id`; returns the id that owns it (`id` itself if the claim is new).
    async fn claim(&self, scope: &str, key: &str, id: &str) -> Result<String, KvError> {
        let store = StoreId::new(STATE_TENANT, IDEMPOTENCY_STORE);
        let full = format!("{scope}/{key}");
        let mine = serde_json::to_vec(&Claim {
            id: id.to_owned(),
            at_ms: now_ms(),
        })
        .map_err(|e| KvError::Backend(e.to_string()))?;
        loop {
            let current = self.state.get(&store, &full).await?;
            if let Some(bytes) = &current
                && let Ok(claim) = serde_json::from_slice::<Claim>(bytes)
                && now_ms().saturating_sub(claim.at_ms) < IDEMPOTENCY_WINDOW.as_millis() as u64
            {
                return Ok(claim.id);
            }
            let new = Bytes::from(mine.clone());
            if self
                .state
                .compare_and_swap(&store, &full, current.as_deref(), new)
                .await?
            {
                return Ok(id.to_owned());
            }
        }
    }

    /// Accepts an invocation of `function`; returns its record and whether it is a repeat of
    /// an earlier one (same idempotency key).
    ///
    /// The message is stored before the record, so a recorded invocation is always queued. A
    /// repeat that finds the key claimed but no record (the first request was cut off, by a
    /// crash, between claiming the key and recording) queues the invocation under the claimed
    /// id; should the first message exist after all, the copy is skipped once the invocation
    /// has settled, so this costs at most a second run when both start before either settles.
    pub async fn submit(
        &self,
        tenant: &str,
        app: &str,
        function: &str,
        request: AsyncRequest,
    ) -> Result<(InvocationRecord, bool), SubmitError> {
        let mut id = uuid::Uuid::now_v7().to_string();
        let mut repeat = false;
        if let Some(key) = &request.idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return Err(SubmitError::Invalid(format!(
                    "an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"
                )));
            }
            let owner = self
                .claim(&format!("{tenant}/{app}/{function}"), key, &id)
                .await?;
            if owner != id {
                if let Some(record) = self.get(&owner).await? {
                    return Ok((record, true));
                }
                id = owner;
                repeat = true;
            }
        }
        let now = now_ms();
        let record = InvocationRecord {
            id: id.clone(),
            app: app.to_owned(),
            function: function.to_owned(),
            status: InvocationStatus::Queued,
            attempts: 0,
            created_at_ms: now,
            updated_at_ms: now,
            result_status: None,
            result: None,
            result_base64: None,
            error: None,
        };
        let mut attributes = vec![
            ("ce-id".to_owned(), id.clone()),
            (
                "ce-source".to_owned(),
                format!("/apps/{app}/functions/{function}"),
            ),
            ("ce-type".to_owned(), INVOKE_TYPE.to_owned()),
            (
                METHOD_ATTR.to_owned(),
                request.method.unwrap_or_else(|| "POST".into()),
            ),
            (
                PATH_ATTR.to_owned(),
                request.path.unwrap_or_else(|| "/".into()),
            ),
        ];
        if let Some(ct) = request.content_type {
            attributes.push((cloud::CONTENT_TYPE.to_owned(), ct));
        }
        let message = NewMessage {
            body: request.payload,
            attributes,
            ..NewMessage::default()
        };
        self.queues
            .send(&invoke_queue(tenant, app, function), message)
            .await?;
        // Only if there is none yet: a fast consumer may already have recorded a result.
        let json = serde_json::to_vec(&record)
            .map_err(|e| KvError::Backend(format!("encoding an invocation record: {e}")))?;
        self.state
            .compare_and_swap(&Self::records(), &id, None, Bytes::from(json))
            .await?;
        let record = self.get(&id).await?.unwrap_or(record);
        Ok((record, repeat))
    }
}

/// Runs the queued invocations of one function.
pub(crate) struct AsyncDeliver {
    pub invocations: Arc<Invocations>,
    pub queues: Arc<dyn QueueBackend>,
    pub tenant: String,
    pub app: String,
    pub config: AsyncConfig,
    pub event: Option<EventFunction>,
    pub http: Option<HttpFunction>,
    pub function: String,
}

fn attr<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a str> {
    delivery
        .message
        .attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl AsyncDeliver {
    async fn record(&self, delivery: &Delivery) -> InvocationRecord {
        let id = attr(delivery, "ce-id").unwrap_or(&delivery.message.id);
        match self.invocations.get(id).await {
            Ok(Some(record)) => record,
            _ => InvocationRecord {
                id: id.to_owned(),
                app: self.app.clone(),
                function: self.function.clone(),
                status: InvocationStatus::Queued,
                attempts: 0,
                created_at_ms: delivery.message.sent_at_ms,
                updated_at_ms: now_ms(),
                result_status: None,
                result: None,
                result_base64: None,
                error: None,
            },
        }
    }

    async fn save(&self, record: &mut InvocationRecord) {
        record.updated_at_ms = now_ms();
        if let Err(e) = self.invocations.put(record).await {
            tracing::error!(invocation = %record.id, error = %e, "could not store an invocation record");
        }
    }

    async fn run(&self, delivery: &Delivery) -> Result<Option<(u16, Bytes)>, String> {
        let id = attr(delivery, "ce-id").unwrap_or(&delivery.message.id);
        let invocation =
            Invocation::new(uuid::Uuid::now_v7().to_string().into(), TriggerKind::Async)
                .in_invocation(id);
        let request_id = invocation.request_id.clone();
        if let Some(function) = &self.event {
            let event = cloud::queue_event(&self.app, &self.function, &delivery.message)?;
            return match function.handle(cloud::to_engine(&event), invocation).await {
                Ok(Ok(())) => Ok(None),
                Ok(Err(message)) => Err(format!("handler failed: {message}")),
                Err(e) => Err(format!("{e} (request id {request_id})")),
            };
        }
        let Some(function) = &self.http else {
            return Err("the function is not deployed".into());
        };
        let method = attr(delivery, METHOD_ATTR).unwrap_or("POST");
        let path = attr(delivery, PATH_ATTR).unwrap_or("/");
        let content_type = attr(delivery, cloud::CONTENT_TYPE);
        match function
            .call(
                method,
                path,
                content_type,
                delivery.message.body.clone(),
                MAX_RESULT_BYTES,
                invocation,
            )
            .await
        {
            Ok((status, body)) if status >= 500 => Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )),
            Ok((status, body)) => Ok(Some((status, body))),
            Err(e) => Err(format!("{e} (request id {request_id})")),
        }
    }

    async fn notify(&self, queue: Option<&String>, record: &InvocationRecord) {
        let Some(queue) = queue else { return };
        let Ok(json) = serde_json::to_vec(record) else {
            return;
        };
        let message = NewMessage {
            body: Bytes::from(json),
            attributes: vec![(cloud::CONTENT_TYPE.to_owned(), "application/json".into())],
            ..NewMessage::default()
        };
        let destination = QueueId::new(&self.tenant, &self.app, queue);
        if let Err(e) = self.queues.send(&destination, message).await {
            tracing::error!(invocation = %record.id, queue = %destination, error = %e, "could not send an invocation outcome to its destination");
        }
    }
}

#[async_trait]
impl Deliver for AsyncDeliver {
    async fn attempt(&self, delivery: &Delivery) -> Result<(), String> {
        let mut record = self.record(delivery).await;
        if matches!(
            record.status,
            InvocationStatus::Succeeded | InvocationStatus::Failed
        ) {
            // Settled already (a redelivery after a crash between settling and the ack).
            return Ok(());
        }
        record.status = InvocationStatus::Running;
        record.attempts = delivery.message.attempts;
        self.save(&mut record).await;
        match self.run(delivery).await {
            Ok(result) => {
                record.status = InvocationStatus::Succeeded;
                record.error = None;
                if let Some((status, body)) = result {
                    record.result_status = Some(status);
                    record.result_base64 =
                        Some(base64::engine::general_purpose::STANDARD.encode(&body));
                    record.result = String::from_utf8(body.to_vec()).ok();
                }
                // The destination hears first, so whoever sees the record settled can count on
                // the outcome message being there (a crash in between repeats the message).
                record.updated_at_ms = now_ms();
                self.notify(self.config.on_success.as_ref(), &record).await;
                self.save(&mut record).await;
                Ok(())
            }
            Err(error) => {
                record.error = Some(error.clone());
                self.save(&mut record).await;
                Err(error)
            }
        }
    }

    async fn finished(&self, delivery: &Delivery, outcome: Result<(), &str>) {
        // Success was reported and recorded by `attempt`.
        let Err(error) = outcome else { return };
        let mut record = self.record(delivery).await;
        record.status = InvocationStatus::Failed;
        record.error = Some(error.to_owned());
        record.updated_at_ms = now_ms();
        self.notify(self.config.on_failure.as_ref(), &record).await;
        self.save(&mut record).await;
    }
}
