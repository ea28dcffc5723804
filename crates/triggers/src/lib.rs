//! Event sources: what invokes event-handler functions (`nimbus:events/handler`) besides HTTP.
//!
//! The control plane starts an app's triggers when a version goes live ([`Triggers::start`])
//! and drops the returned [`AppTriggers`] when it is replaced or deleted, which stops them.
//! Invocations already running finish on their own; [`Triggers::shutdown`] waits for them.
//!
//! # Layout
//!
//! - [`queue_worker`]: `[[trigger.queue]]` — leases, concurrency, retries with backoff, the
//!   dead-letter queue.
//! - [`cron`]: `[[trigger.cron]]` — once per tick across restarts, missed-tick policy.
//! - [`changes`]: `[[trigger.object]]` and `[[trigger.kv]]` — the store wrappers that report
//!   changes and the router that queues them for the triggers.
//! - [`invoke`]: asynchronous invocation — records, idempotency keys, retries, destinations.
//! - [`cloud`]: events as CloudEvents 1.0 (cloudevents-sdk) and their engine record.
//! - [`backoff`]: retry delays.

pub mod backoff;
pub mod changes;
pub mod cloud;
pub mod cron;
pub mod invoke;
mod queue_worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nimbus_engine::{EventFunction, HttpFunction, TriggerKind};
use nimbus_kv::KvBackend;
use nimbus_manifest::cron::Schedule;
use nimbus_manifest::{App, QueueTrigger};
use nimbus_queue::{QueueBackend, QueueId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::changes::{ChangeRouter, Watched};
use crate::cron::CronJob;
use crate::invoke::{AsyncDeliver, Invocations, invoke_queue};
use crate::queue_worker::{EventDeliver, QueueConsumer};

/// Why an app's triggers could not start.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A trigger needs a service this platform was started without.
    #[error("{0} triggers need a {1}, and this platform has none")]
    MissingService(&'static str, &'static str),
    /// A trigger names a function that was not prepared as an event handler.
    #[error("function `{0}` is named by a trigger but was not prepared as an event handler")]
    NotAnEventFunction(String),
    /// A cron schedule that does not parse (validation should have caught it).
    #[error("cron trigger of `{function}`: {message}")]
    Schedule {
        /// The function.
        function: String,
        /// What is wrong.
        message: String,
    },
}

/// Most asynchronous invocations of one function running at once.
const ASYNC_CONCURRENCY: u32 = 16;

/// Starts and stops triggers; one per platform.
pub struct Triggers {
    queues: Option<Arc<dyn QueueBackend>>,
    state: Option<Arc<dyn KvBackend>>,
    router: Option<Arc<ChangeRouter>>,
    invocations: Option<Arc<Invocations>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// The running triggers of one app version; dropping it stops them.
pub struct AppTriggers {
    cancel: CancellationToken,
    routes: Option<(Arc<ChangeRouter>, u64)>,
}

impl Drop for AppTriggers {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some((router, registration)) = self.routes.take() {
            router.unregister(registration);
        }
    }
}

impl Triggers {
    /// `queues` serves queue triggers; `state` (the platform's key-value backend) keeps cron
    /// ticks; `router` receives the changes of the wrapped object store and key-value backend
    /// (see [`changes`]) for object and key-value triggers.
    pub fn new(
        queues: Option<Arc<dyn QueueBackend>>,
        state: Option<Arc<dyn KvBackend>>,
        router: Option<Arc<ChangeRouter>>,
    ) -> Self {
        let invocations = match (&state, &queues) {
            (Some(s), Some(q)) => Some(Arc::new(Invocations::new(s.clone(), q.clone()))),
            _ => None,
        };
        Self {
            queues,
            state,
            router,
            invocations,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Asynchronous invocations, if this platform has the queue and key-value backends for them.
    pub fn invocations(&self) -> Option<&Arc<Invocations>> {
        self.invocations.as_ref()
    }

    /// The queue backend, if any.
    pub fn queues(&self) -> Option<&Arc<dyn QueueBackend>> {
        self.queues.as_ref()
    }

    /// Starts every trigger of `app`, and the consumers of its functions' asynchronous
    /// invocations. `functions` holds the event-handler functions of the version and `http` its
    /// HTTP functions, by name. Nothing runs if this fails.
    pub fn start(
        &self,
        tenant: &str,
        app: &App,
        functions: &BTreeMap<String, EventFunction>,
        http: &BTreeMap<String, HttpFunction>,
    ) -> Result<AppTriggers, TriggerError> {
        let function = |name: &str| {
            functions
                .get(name)
                .cloned()
                .ok_or_else(|| TriggerError::NotAnEventFunction(name.to_owned()))
        };
        let mut consumers = Vec::new();
        for trigger in &app.triggers.queue {
            let queues = self
                .queues
                .clone()
                .ok_or(TriggerError::MissingService("queue", "queue backend"))?;
            consumers.push(QueueConsumer {
                queues,
                queue: QueueId::new(tenant, &app.name, &trigger.queue),
                dead_letter: trigger
                    .dead_letter_queue
                    .as_deref()
                    .map(|dlq| QueueId::new(tenant, &app.name, dlq)),
                trigger: trigger.clone(),
                deliver: Arc::new(EventDeliver {
                    app: app.name.clone(),
                    queue: trigger.queue.clone(),
                    function: function(&trigger.function)?,
                    trigger: TriggerKind::Queue,
                }),
            });
        }
        let mut jobs = Vec::new();
        for trigger in &app.triggers.cron {
            let state = self
                .state
                .clone()
                .ok_or(TriggerError::MissingService("cron", "key-value backend"))?;
            let schedule =
                Schedule::parse(&trigger.schedule, &trigger.timezone).map_err(|message| {
                    TriggerError::Schedule {
                        function: trigger.function.clone(),
                        message,
                    }
                })?;
            jobs.push(CronJob {
                state,
                tenant: tenant.to_owned(),
                app: app.name.clone(),
                trigger: trigger.clone(),
                schedule,
                function: function(&trigger.function)?,
            });
        }
        let mut routes = Vec::new();
        for (watched, triggers) in [
            (Watched::Bucket, &app.triggers.object),
            (Watched::Store, &app.triggers.kv),
        ] {
            for trigger in triggers {
                let (queues, _) = match (&self.queues, &self.router) {
                    (Some(q), Some(r)) => (q.clone(), r.clone()),
                    _ => {
                        return Err(TriggerError::MissingService(
                            watched.name(),
                            "queue backend and change router",
                        ));
                    }
                };
                let function = function(&trigger.function)?;
                let queue = QueueId::new(tenant, &app.name, &trigger.queue_name(watched.name()));
                let timeout = function.spec().limits.timeout_ms;
                consumers.push(QueueConsumer {
                    queues,
                    queue: queue.clone(),
                    dead_letter: trigger
                        .dead_letter_queue
                        .as_deref()
                        .map(|dlq| QueueId::new(tenant, &app.name, dlq)),
                    trigger: QueueTrigger {
                        function: trigger.function.clone(),
                        queue: queue.queue.clone(),
                        batch_size: QueueTrigger::DEFAULT_BATCH_SIZE,
                        concurrency: trigger.concurrency,
                        max_attempts: trigger.max_attempts,
                        dead_letter_queue: trigger.dead_letter_queue.clone(),
                        retry_backoff_ms: QueueTrigger::DEFAULT_RETRY_BACKOFF_MS,
                        max_backoff_ms: QueueTrigger::DEFAULT_MAX_BACKOFF_MS,
                        visibility_timeout_ms: timeout + QueueTrigger::VISIBILITY_MARGIN_MS,
                    },
                    deliver: Arc::new(EventDeliver {
                        app: app.name.clone(),
                        queue: queue.queue.clone(),
                        function,
                        trigger: match watched {
                            Watched::Bucket => TriggerKind::Object,
                            Watched::Store => TriggerKind::Kv,
                        },
                    }),
                });
                routes.push((watched, trigger.clone(), queue));
            }
        }
        if let (Some(invocations), Some(queues)) = (&self.invocations, &self.queues) {
            for f in &app.functions {
                let (event, http) = (functions.get(&f.name).cloned(), http.get(&f.name).cloned());
                if event.is_none() && http.is_none() {
                    continue;
                }
                let queue = invoke_queue(tenant, &app.name, &f.name);
                consumers.push(QueueConsumer {
                    queues: queues.clone(),
                    queue: queue.clone(),
                    dead_letter: None,
                    trigger: QueueTrigger {
                        function: f.name.clone(),
                        queue: queue.queue.clone(),
                        batch_size: QueueTrigger::DEFAULT_BATCH_SIZE,
                        concurrency: f.limits.max_concurrency.min(ASYNC_CONCURRENCY),
                        max_attempts: f.async_invocation.max_attempts,
                        dead_letter_queue: None,
                        retry_backoff_ms: f.async_invocation.retry_backoff_ms,
                        max_backoff_ms: QueueTrigger::DEFAULT_MAX_BACKOFF_MS
                            .max(f.async_invocation.retry_backoff_ms),
                        visibility_timeout_ms: f.limits.timeout_ms
                            + QueueTrigger::VISIBILITY_MARGIN_MS,
                    },
                    deliver: Arc::new(AsyncDeliver {
                        invocations: invocations.clone(),
                        queues: queues.clone(),
                        tenant: tenant.to_owned(),
                        app: app.name.clone(),
                        config: f.async_invocation.clone(),
                        event,
                        http,
                        function: f.name.clone(),
                    }),
                });
            }
        }
        let routes = match (&self.router, routes.is_empty()) {
            (Some(router), false) => Some((router.clone(), router.register(tenant, routes))),
            _ => None,
        };
        let cancel = self.shutdown.child_token();
        for consumer in consumers {
            let (cancel, tracker) = (cancel.clone(), self.tracker.clone());
            self.tracker.spawn(Arc::new(consumer).run(cancel, tracker));
        }
        for job in jobs {
            let (cancel, tracker) = (cancel.clone(), self.tracker.clone());
            self.tracker.spawn(Arc::new(job).run(cancel, tracker));
        }
        Ok(AppTriggers { cancel, routes })
    }

    /// Stops every trigger and waits up to `grace` for running invocations to finish. Messages
    /// still leased after that are delivered again after a restart.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "event invocations still running at shutdown; their events will be delivered again"
            );
        }
    }
}
