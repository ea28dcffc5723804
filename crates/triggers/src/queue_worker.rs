//! The consumer behind one `[[trigger.queue]]`: leases messages, delivers each to a fresh
//! instance of the function, and acknowledges, retries or dead-letters it.
//!
//! One poller per trigger holds up to `concurrency` permits; it leases as many messages as it
//! has free permits (at most `batch_size` per poll) and hands each, with a permit, to its own
//! task. So at most `concurrency` invocations run at once, a slow handler holds back only its
//! own trigger, and nothing is leased that cannot start at once (leases do not run out while
//! messages wait in memory).
//!
//! Outcomes: `ok` → ack. A handler error, trap, timeout or CPU-budget overrun is a failed
//! attempt: retried after [`crate::backoff::retry_delay`] until `max_attempts`, then moved to
//! the dead-letter queue (or, without one, dropped with an error in the log — Lambda's default).
//! A message delivered more often than `max_attempts` (its lease ran out repeatedly, say across
//! crashes) is dead-lettered without running again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nimbus_engine::{EventFunction, Invocation, TriggerKind};
use nimbus_manifest::QueueTrigger;
use nimbus_queue::{Delivery, QueueBackend, QueueId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::retry_delay;
use crate::cloud;

/// How long one receive waits for a message before polling again.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// Pause after a backend error before polling again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What a consumer does with each delivery.
#[async_trait]
pub(crate) trait Deliver: Send + Sync {
    /// One attempt: `Ok` acknowledges the message, `Err(reason)` fails this attempt.
    async fn attempt(&self, delivery: &Delivery) -> Result<(), String>;
    /// Called once a delivery is settled for good: `Ok` when it succeeded, `Err(reason)` when
    /// it failed for the last time (before it is dead-lettered or dropped).
    async fn finished(&self, _delivery: &Delivery, _outcome: Result<(), &str>) {}
}

/// Delivers messages as CloudEvents to an event-handler function.
pub(crate) struct EventDeliver {
    pub app: String,
    pub queue: String,
    pub function: EventFunction,
    /// What the deliveries are metered as: a queue trigger's messages, or the object / KV
    /// changes queued for a change trigger.
    pub trigger: TriggerKind,
}

#[async_trait]
impl Deliver for EventDeliver {
    async fn attempt(&self, delivery: &Delivery) -> Result<(), String> {
        let event = cloud::queue_event(&self.app, &self.queue, &delivery.message)?;
        // Every delivery of a message is one run of the same invocation.
        let invocation = Invocation::new(uuid::Uuid::now_v7().to_string().into(), self.trigger)
            .in_invocation(delivery.message.id.as_str())
            .with_parent(sender_span(&delivery.message));
        let id = invocation.request_id.clone();
        match self
            .function
            .handle(cloud::to_engine(&event), invocation)
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(format!("handler failed: {message}")),
            Err(e) => Err(format!("{e} (request id {id})")),
        }
    }
}

/// The span that sent a message (its `ce-traceparent` attribute), which the consumer's
/// invocation continues.
fn sender_span(message: &nimbus_queue::Message) -> nimbus_trace::Parent {
    message
        .attributes
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(nimbus_engine::queue::TRACEPARENT_ATTRIBUTE))
        .map(|(_, v)| nimbus_trace::Parent::from_traceparent(v))
        .unwrap_or_default()
}

/// Everything one queue consumer needs.
pub(crate) struct QueueConsumer {
    pub queues: Arc<dyn QueueBackend>,
    pub queue: QueueId,
    pub dead_letter: Option<QueueId>,
    /// Concurrency, batch size, attempts, backoff and visibility (the queue trigger, or
    /// settings derived from another trigger's).
    pub trigger: QueueTrigger,
    pub deliver: Arc<dyn Deliver>,
}

impl QueueConsumer {
    /// Polls until `cancel` fires; invocations run on `tracker`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, tracker: TaskTracker) {
        let permits = Arc::new(Semaphore::new(self.trigger.concurrency as usize));
        let visibility = Duration::from_millis(self.trigger.visibility_timeout_ms);
        let batch = self.trigger.batch_size.max(1) as usize;
        loop {
            let first = tokio::select! {
                () = cancel.cancelled() => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut held = vec![first];
            while held.len() < batch {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.queues.receive(&self.queue, held.len(), visibility, POLL_WAIT) => r,
            };
            match received {
                Ok(deliveries) => {
                    for (delivery, permit) in deliveries.into_iter().zip(held) {
                        let this = self.clone();
                        tracker.spawn(async move { this.deliver(delivery, permit).await });
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %self.queue, error = %e, "receiving from the queue failed");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// Runs one delivery and settles it.
    async fn deliver(&self, delivery: Delivery, _permit: OwnedSemaphorePermit) {
        let message = &delivery.message;
        let attempt = message.attempts;
        let failure = if attempt > self.trigger.max_attempts {
            Some(format!(
                "delivered {attempt} times without being handled (max_attempts {})",
                self.trigger.max_attempts
            ))
        } else {
            self.deliver.attempt(&delivery).await.err()
        };
        let settled = match failure {
            None => {
                self.deliver.finished(&delivery, Ok(())).await;
                self.queues.ack(&self.queue, &delivery.receipt).await
            }
            Some(error) => self.fail(&delivery, &error).await,
        };
        if let Err(e) = settled {
            // Most likely the lease ran out: the message will be delivered again.
            tracing::warn!(queue = %self.queue, message = %message.id, error = %e, "could not settle a delivery");
        }
    }

    async fn fail(&self, delivery: &Delivery, error: &str) -> Result<(), nimbus_queue::QueueError> {
        let message = &delivery.message;
        let attempt = message.attempts;
        let function = &self.trigger.function;
        if attempt < self.trigger.max_attempts {
            let delay = retry_delay(
                attempt,
                Duration::from_millis(self.trigger.retry_backoff_ms),
                Duration::from_millis(self.trigger.max_backoff_ms),
            );
            tracing::warn!(queue = %self.queue, %function, message = %message.id, attempt, retry_in_ms = delay.as_millis() as u64, %error, "event failed; will retry");
            return self
                .queues
                .retry(&self.queue, &delivery.receipt, delay, error)
                .await;
        }
        self.deliver.finished(delivery, Err(error)).await;
        match &self.dead_letter {
            Some(dlq) => {
                tracing::warn!(queue = %self.queue, %function, message = %message.id, attempt, dead_letter_queue = %dlq, %error, "event failed for the last time; dead-lettered");
                self.queues
                    .dead_letter(&self.queue, &delivery.receipt, dlq, error)
                    .await
            }
            None => {
                tracing::error!(queue = %self.queue, %function, message = %message.id, attempt, %error, "event failed for the last time and the trigger has no dead_letter_queue; dropped");
                self.queues.ack(&self.queue, &delivery.receipt).await
            }
        }
    }
}
