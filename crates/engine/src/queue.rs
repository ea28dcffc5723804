//! `nimbus:queue/sender@0.1.0` for guests: send to the app's durable queues
//! (`wit/queue/world.wit`), on a [`QueueBackend`].
//!
//! Capabilities: a function may send only to the queues listed in its `queues`, each with its
//! declared limits (`max_message_bytes`, `max_messages`); anything else is `access-denied`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_manifest::Queue;
use nimbus_queue::{MAX_DELAY, NewMessage, QueueBackend, QueueError, QueueId};
use wasmtime::component::{HasData, Linker};

use crate::host::HostState;
use nimbus_trace::{KeyValue, Span, SpanKind};

/// The message attribute carrying the sender's span: `ce-` makes it the `traceparent`
/// extension of the CloudEvent the consumer receives.
pub const TRACEPARENT_ATTRIBUTE: &str = "ce-traceparent";

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/queue",
        world: "nimbus:queue/imports",
        imports: { default: async | trappable },
        require_store_data_send: true,
    });
}

use bindings::nimbus::queue::sender;

/// The queue capability of one invocation.
#[derive(Clone, Default)]
pub struct QueueCtx {
    backend: Option<Arc<dyn QueueBackend>>,
    tenant: Arc<str>,
    app: Arc<str>,
    allowed: Arc<[Queue]>,
    tracer: nimbus_trace::Tracer,
}

impl QueueCtx {
    /// Sending to `allowed` queues of `app` on `backend` (`None`: no queue service, every send
    /// fails).
    pub fn new(
        backend: Option<Arc<dyn QueueBackend>>,
        tenant: Arc<str>,
        app: Arc<str>,
        allowed: Arc<[Queue]>,
        tracer: nimbus_trace::Tracer,
    ) -> Self {
        Self {
            backend,
            tenant,
            app,
            allowed,
            tracer,
        }
    }
}

struct NimbusQueue;

impl HasData for NimbusQueue {
    type Data<'a> = &'a QueueCtx;
}

fn view(state: &mut HostState) -> &QueueCtx {
    &state.queue
}

/// Adds the interface to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    sender::add_to_linker::<HostState, NimbusQueue>(linker, view)
}

/// The PRODUCER span of one send (none, and nothing allocated, with tracing off).
fn send_span(tracer: &nimbus_trace::Tracer, queue: &str) -> Span {
    if !tracer.is_on() {
        return Span::none();
    }
    nimbus_trace::current_child(
        tracer,
        format!("send {queue}"),
        SpanKind::Producer,
        vec![
            KeyValue::new("messaging.system", "nimbus"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", queue.to_owned()),
        ],
    )
}

impl sender::Host for &QueueCtx {
    async fn send(
        &mut self,
        queue: String,
        message: sender::Message,
    ) -> wasmtime::Result<Result<String, sender::Error>> {
        let Some(decl) = self.allowed.iter().find(|q| q.name == queue) else {
            return Ok(Err(sender::Error::AccessDenied));
        };
        let Some(backend) = &self.backend else {
            return Ok(Err(sender::Error::Other(
                "this server runs without queues".into(),
            )));
        };
        let limit = (decl.max_message_bytes as usize).min(backend.max_message_bytes());
        if message.body.len() > limit {
            return Ok(Err(sender::Error::TooLarge(limit as u64)));
        }
        let delay = Duration::from_millis(message.delay_ms.unwrap_or(0));
        if delay > MAX_DELAY {
            return Ok(Err(sender::Error::InvalidDelay));
        }
        let mut attributes = message
            .content_type
            .map(|ct| vec![("content-type".to_owned(), ct)])
            .unwrap_or_default();
        let mut span = send_span(&self.tracer, &queue);
        // The consumer's invocation continues this trace (the attribute is CloudEvents'
        // distributed-tracing extension on the delivered event).
        if let Some(traceparent) = span.parent().traceparent() {
            attributes.push((TRACEPARENT_ATTRIBUTE.to_owned(), traceparent));
        }
        let sent = backend
            .send(
                &QueueId::new(&self.tenant, &self.app, &queue),
                NewMessage {
                    body: Bytes::from(message.body),
                    attributes,
                    delay,
                    capacity: Some(decl.max_messages as usize),
                },
            )
            .await;
        match &sent {
            Ok(id) => span.set_attribute(KeyValue::new("messaging.message.id", id.clone())),
            Err(e) => span.set_error(e.to_string()),
        }
        Ok(match sent {
            Ok(id) => Ok(id),
            Err(QueueError::Full { .. }) => Err(sender::Error::Full),
            Err(QueueError::MessageTooLarge { limit, .. }) => {
                Err(sender::Error::TooLarge(limit as u64))
            }
            Err(e) => {
                tracing::warn!(target: "nimbus::queue", error = %e, "queue send from a function failed");
                Err(sender::Error::Other(e.to_string()))
            }
        })
    }
}
