//! A prepared event-handler function version and one event delivered to it.
//!
//! Event-driven functions (queue consumers, cron jobs, storage-change handlers) export
//! `nimbus:events/handler@0.1.0` (`wit/events/world.wit`) instead of `wasi:http`: one call per
//! event, a CloudEvents 1.0-shaped record in, `ok` or `err(message)` out. Each event gets a
//! fresh instance under the function's limits, as HTTP requests do.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, LoadedComponent};
use crate::error::{EngineError, InvokeError};
use crate::host::HostState;
use crate::offload::AbortOnDrop;
use crate::offload::spawn_guest;
use crate::provisioned::{Provisioned, Ready, ReplenishOnDrop};
use crate::residency::Resident;
use crate::runtime::{FunctionRuntime, classify};
use crate::spec::{FunctionSpec, Invocation};
use crate::usage::UsageMeter;
use nimbus_metering::Outcome;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/events",
        world: "nimbus:events/event-handler",
        exports: { default: async },
        require_store_data_send: true,
    });
}

use bindings::nimbus::events::types::Event as WitEvent;
pub(crate) use bindings::{EventHandler, EventHandlerPre};

/// A CloudEvents 1.0 event, as handed to a function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Unique per source.
    pub id: String,
    /// What produced it (`/queues/orders`, ...).
    pub source: String,
    /// Reverse-DNS type (`dev.nimbus.queue.message`, ...).
    pub ty: String,
    /// What it is about within the source.
    pub subject: Option<String>,
    /// RFC 3339 time.
    pub time: Option<String>,
    /// Media type of `data`.
    pub datacontenttype: Option<String>,
    /// Payload.
    pub data: Option<Vec<u8>>,
    /// Extension attributes.
    pub extensions: Vec<(String, String)>,
}

impl From<Event> for WitEvent {
    fn from(e: Event) -> Self {
        WitEvent {
            id: e.id,
            source: e.source,
            type_: e.ty,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.datacontenttype,
            data: e.data,
            extensions: e.extensions,
        }
    }
}

/// An event-handler function version ready to take events.
#[derive(Clone)]
pub struct EventFunction {
    rt: Arc<FunctionRuntime>,
    code: Arc<Resident<EventHandlerPre<HostState>>>,
    provisioned: Arc<Provisioned<EventHandlerPre<HostState>>>,
}

impl EventFunction {
    pub(crate) fn new(
        engine: Engine,
        component: &LoadedComponent,
        pre: EventHandlerPre<HostState>,
        spec: FunctionSpec,
    ) -> Self {
        let code = Resident::new(&engine, component, pre, &spec);
        let rt = Arc::new(FunctionRuntime::new(engine, spec));
        Self {
            provisioned: Provisioned::new(rt.clone(), code.clone()),
            code,
            rt,
        }
    }

    /// Whether the function's code is in memory (false once it scaled to zero).
    pub fn is_resident(&self) -> bool {
        self.code.is_resident()
    }

    /// Events being handled by this function version now.
    pub fn in_flight(&self) -> u32 {
        self.code.in_flight()
    }

    /// Pre-instantiated instances waiting for an event (`min_instances`).
    pub fn ready_instances(&self) -> usize {
        self.provisioned.ready()
    }

    /// The same function keeping no instances ready, for a function that also serves HTTP:
    /// its HTTP side keeps (and is billed for) the `min_instances`, so the function has one
    /// pool, not two. Its code stays pinned in memory all the same, so events never wait for
    /// an activation. Call before [`warm_up`](Self::warm_up).
    pub fn without_ready_instances(mut self) -> Self {
        self.provisioned = Provisioned::with_target(self.rt.clone(), self.code.clone(), 0);
        self
    }

    /// The function's spec.
    pub fn spec(&self) -> &FunctionSpec {
        &self.rt.spec
    }

    /// Instantiates the function once without calling it, then makes its `min_instances`
    /// (see [`crate::HttpFunction::warm_up`]).
    pub async fn warm_up(&self) -> Result<(), EngineError> {
        let mut store = self.rt.new_store(&Invocation::new(
            "warm-up".into(),
            nimbus_metering::TriggerKind::Queue,
        ));
        self.code
            .prepared()
            .await?
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        self.provisioned.fill().await
    }

    /// Delivers one event to a fresh instance. `Ok(Ok(()))`: handled; `Ok(Err(message))`: the
    /// handler reported a failure; `Err`: the invocation itself failed (trap, timeout, CPU
    /// budget, instantiation).
    pub async fn handle(
        &self,
        event: Event,
        invocation: Invocation,
    ) -> Result<Result<(), String>, InvokeError> {
        let meter = self.rt.meter(&invocation);
        meter.add_bytes_in(event.data.as_ref().map_or(0, |d| d.len() as u64));
        let mut span = self.rt.span(&invocation);
        let ids = invocation.clone();
        let result = nimbus_trace::in_scope(&span, self.run(event, invocation, &meter)).await;
        if let Err(err) = &result {
            self.rt.log_failure(&ids, err);
        }
        match &result {
            Ok(Err(message)) => span.set_error(message.clone()),
            other => span.record_result(other),
        }
        match &result {
            // A handler that reports a failure ran, but failed: it is billed as an error.
            Ok(Err(_)) => meter.set_outcome(Outcome::Error),
            other => meter.set_result(other),
        }
        result
    }

    async fn run(
        &self,
        event: Event,
        invocation: Invocation,
        meter: &UsageMeter,
    ) -> Result<Result<(), String>, InvokeError> {
        let limits = self.rt.spec.limits;
        let Ready {
            mut store,
            instance: ready,
            budget,
        } = self.provisioned.for_invocation(&invocation)?;
        let (pre, busy, cold) = self
            .code
            .acquire()
            .await
            .map_err(|e| InvokeError::Instantiate(e.to_string()))?;
        if cold {
            meter.set_cold_start();
        }
        let event = WitEvent::from(event);
        let share = self.rt.share().clone();
        let slot = store.data().cpu_slot.clone();
        let meter = meter.clone();
        let replenish = ReplenishOnDrop(self.provisioned.clone());
        let cpu = self.rt.engine.cpu_runtime();
        let cpu_bound = share.is_cpu_bound();
        let moves_at = slot.clone();
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        // The guest's own spans (queue sends, key-value calls) hang under the invocation's,
        // whichever task and runtime it runs on.
        let guest = nimbus_trace::propagate(async move {
            // Declared first, dropped last: the refill finds the budget and the slot free.
            let _replenish = replenish;
            let wait = share.waits_for_a_slot();
            let run = async {
                if wait {
                    slot.first_slice().await;
                }
                let guest = match ready {
                    Some(guest) => guest,
                    None => pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?,
                };
                let result = guest
                    .nimbus_events_handler()
                    .call_handle(&mut store, &event)
                    .await;
                result.map_err(|e| classify(&e, store.data().cpu, limits))
            };
            let result =
                match tokio::time::timeout_at(deadline, meter.timed(&share, &slot, run)).await {
                    Ok(result) => result,
                    Err(_) => Err(InvokeError::Timeout(limits.timeout_ms)),
                };
            meter.set_peak_memory(store.data().limits.memory_bytes as u64);
            share.drop_counted(store);
            drop((busy, budget));
            result
        });
        let task = spawn_guest(cpu, moves_at, cpu_bound, guest);
        // A caller that goes away (a trigger shutting down) takes the guest with it. The
        // deadline is also kept here, on the caller's runtime: the CPU runtime's timers fire
        // late while its workers are busy with guests' slices.
        let mut guard = AbortOnDrop(Some(task.abort_handle()));
        let result = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(InvokeError::Trap(format!("invocation task failed: {join}"))),
            Err(_) => return Err(InvokeError::Timeout(limits.timeout_ms)),
        };
        guard.0 = None;
        result
    }
}
