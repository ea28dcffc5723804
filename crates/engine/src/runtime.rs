//! What every kind of function shares: its spec, its capabilities, and how one invocation's
//! `Store` is built under its limits.

use std::sync::Arc;
use std::time::Duration;

use nimbus_manifest::{Limits, OutboundHost};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::blobstore::BlobCtx;
use crate::engine::Engine;
use crate::error::InvokeError;
use crate::guest_log::{GuestLog, LogTags};
use crate::host::{CpuMeter, HostState};
use crate::keyvalue::KvCtx;
use crate::outbound::{OutboundLimits, OutboundPolicy};
use crate::spec::{FunctionSpec, Invocation};
use crate::throttle::Throttle;
use crate::usage::{Limiter, RecordNames, UsageMeter};
use nimbus_metering::TriggerKind;
use nimbus_trace::{KeyValue, Span, SpanKind};

/// A function version's spec with its capabilities resolved once, at prepare time.
pub(crate) struct FunctionRuntime {
    pub(crate) engine: Engine,
    pub(crate) spec: FunctionSpec,
    env: Arc<[(String, String)]>,
    allowed: Arc<[OutboundHost]>,
    kv: KvCtx,
    blob: BlobCtx,
    queue: crate::queue::QueueCtx,
    config: Arc<WasiConfigVariables>,
    secrets: Arc<[String]>,
    share: crate::fair::AppShare,
    names: RecordNames,
    /// The operator's log gets a function's failures at most this often (its own log gets
    /// every one).
    failures_logged: Throttle,
}

/// How often a function's failures reach the operator's log at most.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

impl FunctionRuntime {
    pub(crate) fn new(engine: Engine, spec: FunctionSpec) -> Self {
        Self {
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allowed: spec.allowed_outbound_hosts.clone().into(),
            kv: KvCtx::new(
                engine.services().kv.clone(),
                spec.tenant.as_str().into(),
                spec.key_value_stores.clone().into(),
            ),
            blob: BlobCtx::new(
                engine.services().objects.clone(),
                spec.tenant.as_str().into(),
                spec.buckets.clone().into(),
            ),
            queue: crate::queue::QueueCtx::new(
                engine.services().queues.clone(),
                spec.tenant.as_str().into(),
                spec.app.as_str().into(),
                spec.queues.clone().into(),
                engine.services().tracer.clone(),
            ),
            config: Arc::new(spec.config.clone().into_iter().collect()),
            secrets: spec.secrets.clone().into(),
            share: engine.fair_share().app(&spec.tenant, &spec.app),
            names: RecordNames::new(&spec),
            failures_logged: Throttle::new(FAILURE_LOG_EVERY),
            engine,
            spec,
        }
    }

    /// The `wasi:config` values of one invocation: the manifest's, plus the declared secrets'
    /// current values (a secret that is not set is absent).
    fn config_values(&self) -> Arc<WasiConfigVariables> {
        let store = match &self.engine.services().secrets {
            Some(store) if !self.secrets.is_empty() => store,
            _ => return self.config.clone(),
        };
        let spec = &self.spec;
        let literals = spec.config.iter().map(|(k, v)| (k.clone(), v.clone()));
        let secrets = self.secrets.iter().filter_map(|name| {
            store
                .resolve(&spec.tenant, &spec.app, name)
                .map(|secret| (name.clone(), secret.expose().to_owned()))
        });
        Arc::new(literals.chain(secrets).collect())
    }

    /// The function's names as records carry them.
    pub(crate) fn names(&self) -> &RecordNames {
        &self.names
    }

    /// The app's fair share (CPU slots, instance budget, recent CPU use).
    pub(crate) fn share(&self) -> &crate::fair::AppShare {
        &self.share
    }

    /// One unit of the app's instance budget, held for as long as the invocation's instance
    /// lives; `AppAtCapacity` at once when the app has none left.
    pub(crate) fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        self.share.admit()
    }

    /// Puts a platform event about an invocation (why it failed) into the function's log, and
    /// a warning into the operator's, throttled per function ([`FAILURE_LOG_EVERY`]): a
    /// function failing on every request must not flood the server's stderr (see
    /// `throttle`).
    pub(crate) fn log_failure(&self, invocation: &Invocation, err: &InvokeError) {
        if let Some(not_logged) = self.failures_logged.pass() {
            tracing::warn!(
                app = %self.names.app,
                function = %self.names.function,
                request_id = %invocation.request_id,
                error = %err,
                similar_failures_not_logged = not_logged,
                "invocation failed (the function's log has every failure)"
            );
        }
        if self.engine.services().logs.is_none() {
            return;
        }
        self.log_tags(invocation)
            .send(nimbus_logs::Stream::Platform, &err.to_string());
    }

    /// Whose lines an invocation's log lines are (names shared with its usage record).
    fn log_tags(&self, invocation: &Invocation) -> LogTags {
        LogTags {
            request_id: invocation.request_id.clone(),
            invocation_id: invocation.invocation_id.clone(),
            tenant: self.names.tenant.clone(),
            sink: self.engine.services().logs.clone(),
            app: self.names.app.clone(),
            function: self.names.function.clone(),
        }
    }

    /// The span of one invocation (a no-op when tracing is off). It hangs under the
    /// invocation's parent and is named and tagged as OpenTelemetry's FaaS conventions ask.
    pub(crate) fn span(&self, invocation: &Invocation) -> Span {
        let tracer = &self.engine.services().tracer;
        if !tracer.is_on() {
            return Span::none();
        }
        let names = &self.names;
        let kind = match invocation.trigger {
            TriggerKind::Http => SpanKind::Server,
            TriggerKind::Queue | TriggerKind::Object | TriggerKind::Kv => SpanKind::Consumer,
            TriggerKind::Cron | TriggerKind::Async => SpanKind::Server,
        };
        let trigger = match invocation.trigger {
            TriggerKind::Http => "http",
            TriggerKind::Queue => "pubsub",
            TriggerKind::Object | TriggerKind::Kv => "datasource",
            TriggerKind::Cron => "timer",
            TriggerKind::Async => "other",
        };
        tracer.start(
            format!("invoke {}/{}", names.app, names.function),
            kind,
            &invocation.parent,
            vec![
                KeyValue::new("faas.name", names.function.clone()),
                KeyValue::new("faas.version", self.spec.version as i64),
                KeyValue::new("faas.trigger", trigger),
                KeyValue::new("faas.invocation_id", invocation.invocation_id.clone()),
                KeyValue::new(
                    "faas.max_memory",
                    i64::from(self.spec.limits.memory_mb) << 20,
                ),
                KeyValue::new("nimbus.app", names.app.clone()),
                KeyValue::new("nimbus.request_id", invocation.request_id.clone()),
                KeyValue::new("nimbus.trigger", invocation.trigger.as_str()),
            ],
        )
    }

    /// Starts metering one invocation (a no-op without a usage sink).
    pub(crate) fn meter(&self, invocation: &Invocation) -> UsageMeter {
        UsageMeter::start(
            self.engine.services().usage.as_ref(),
            &self.names,
            &self.spec,
            invocation,
        )
    }

    /// A fresh store for one invocation, under the function's limits.
    pub(crate) fn new_store(&self, invocation: &Invocation) -> Store<HostState> {
        let config = self.engine.config();
        let limits = self.spec.limits;
        let log = GuestLog::new(self.log_tags(invocation), config.guest_log_limit);
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(log.stdout())
            .stderr(log.stderr());
        let memory_bytes = usize::try_from(u64::from(limits.memory_mb) << 20).unwrap_or(usize::MAX);
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            kv: self.kv.clone(),
            blob: self.blob.clone(),
            queue: self.queue.clone(),
            config: self.config_values(),
            table: ResourceTable::new(),
            limits: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .table_elements(config.max_table_elements)
                    .trap_on_grow_failure(false)
                    .build(),
                memory_bytes: 0,
            },
            outbound: self.outbound(invocation),
            cpu: self.cpu_meter(),
            cpu_slot: crate::fair::CpuSlot::new(&self.share),
            log,
        };
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let (tick_ms, fast) = ctx.data().cpu_slot.tick();
            let may_yield = ctx.data().cpu_slot.may_yield();
            let cpu = &mut ctx.data_mut().cpu;
            cpu.used_ms += tick_ms;
            cpu.since_yield_ms += tick_ms;
            if cpu.used_ms > cpu.budget_ms {
                cpu.exhausted = true;
                Ok(UpdateDeadline::Interrupt)
            } else if (fast || cpu.since_yield_ms >= cpu.slice_ms) && may_yield {
                cpu.since_yield_ms = 0;
                // Yield so a busy guest shares its worker thread with other requests, and
                // queue for one of its app's CPU slots so apps share the CPU (see `fair`).
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    ctx.data().cpu_slot.next_slice(),
                ))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// Hands a pre-instantiated instance's store (built by [`Self::new_store`] for a
    /// placeholder invocation) to `invocation`: its log lines and outbound requests carry the
    /// invocation's ids, it sees the secrets' current values, and its CPU budget and CPU slot
    /// start afresh. What instantiation left in the store (the instance's memory, counted by
    /// the limiter) stays.
    pub(crate) fn bind(&self, store: &mut Store<HostState>, invocation: &Invocation) {
        let state = store.data_mut();
        state.log.bind(self.log_tags(invocation));
        state.outbound = self.outbound(invocation);
        state.config = self.config_values();
        state.cpu = self.cpu_meter();
        state.cpu_slot = crate::fair::CpuSlot::new(&self.share);
        store.set_epoch_deadline(1);
    }

    fn outbound(&self, invocation: &Invocation) -> OutboundPolicy {
        let limits = self.spec.limits;
        OutboundPolicy::new(
            self.allowed.clone(),
            OutboundLimits {
                max_requests: limits.max_outbound_requests,
                max_connections: limits.max_outbound_connections,
            },
            invocation.request_id.clone(),
            self.engine.services().tracer.clone(),
        )
    }

    fn cpu_meter(&self) -> CpuMeter {
        CpuMeter {
            budget_ms: self.spec.limits.cpu_time_ms,
            used_ms: 0,
            since_yield_ms: 0,
            slice_ms: self.engine.config().uncontended_tick.as_millis() as u64,
            exhausted: false,
        }
    }
}

/// Maps a failed call to what the caller reports.
pub(crate) fn classify(err: &wasmtime::Error, cpu: CpuMeter, limits: Limits) -> InvokeError {
    if cpu.exhausted {
        return InvokeError::CpuBudget(limits.cpu_time_ms);
    }
    InvokeError::Trap(trap_message(&format!("{err:?}")))
}

/// Lines of a trap's message (with its wasm backtrace) kept for the log.
const TRAP_LOG_LINES: usize = 40;

/// The trap message with its backtrace cut to [`TRAP_LOG_LINES`] lines: a stack overflow has a
/// backtrace of thousands of frames, and logging all of them for every request let a function
/// that overflows in a loop slow everyone else down (bench/hostile_bench.py).
fn trap_message(full: &str) -> String {
    let total = full.lines().count();
    if total <= TRAP_LOG_LINES {
        return full.to_owned();
    }
    let mut kept: Vec<&str> = full.lines().take(TRAP_LOG_LINES).collect();
    let more = format!("… {} more lines", total - TRAP_LOG_LINES);
    kept.push(&more);
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_trap_backtraces_are_cut() {
        let full: String = (0..1000).map(|i| format!("frame {i}\n")).collect();
        let cut = trap_message(&full);
        assert_eq!(cut.lines().count(), TRAP_LOG_LINES + 1);
        assert!(cut.ends_with("… 960 more lines"), "{cut}");
        assert_eq!(trap_message("short\ntrap"), "short\ntrap");
    }
}
