//! Metering of one invocation: what it used, gathered while it runs and handed to the
//! [`UsageSink`] as one [`UsageRecord`] when it is over.
//!
//! "Over" is when the last holder of the invocation's [`UsageMeter`] lets go: the task running
//! the guest, and for HTTP the response body streaming to the client. The record is built in
//! `Drop`, so every path out of an invocation — success, trap, timeout, a client that hangs
//! up, a task aborted mid-way — produces exactly one record, and a streamed response is billed
//! until its last byte (as Lambda bills response streaming).
//!
//! Durations come from the monotonic clock ([`Instant`]); the wall clock only stamps the start,
//! for grouping by hour and day, so a clock change never makes a duration negative or huge.
//! CPU time is the time the guest's future spent being polled (running wasm and host calls
//! on a worker thread), not time spent waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nimbus_metering::{Outcome, RECORD_VERSION, UsageRecord, UsageSink};
use wasmtime::{ResourceLimiter, StoreLimits};

use crate::error::InvokeError;
use crate::fair::{AppShare, CpuSlot};
use crate::spec::{FunctionSpec, Invocation};

/// The usage of one invocation, shared by everything that takes part in it. A no-op when
/// the engine has no usage sink.
#[derive(Clone)]
pub struct UsageMeter(Option<Arc<Pending>>);

struct Pending {
    sink: Arc<dyn UsageSink>,
    /// The record, with what is known at the start filled in; completed and sent (moved, not
    /// cloned: its names are reference counts that two worker threads would fight over) when
    /// the last holder lets go.
    record: Option<UsageRecord>,
    started: Instant,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    cpu_ns: AtomicU64,
    peak_memory: AtomicU64,
    outcome: AtomicU8,
    cold_start: std::sync::atomic::AtomicBool,
}

/// The names of a function as every record and log line of it carries them (cloned per invocation as
/// reference counts, not strings).
#[derive(Clone)]
pub(crate) struct RecordNames {
    pub(crate) tenant: Arc<str>,
    pub(crate) app: Arc<str>,
    pub(crate) function: Arc<str>,
}

impl RecordNames {
    pub(crate) fn new(spec: &FunctionSpec) -> Self {
        Self {
            tenant: spec.tenant.as_str().into(),
            app: spec.app.as_str().into(),
            function: spec.function.as_str().into(),
        }
    }
}

/// The wall clock in ms since the Unix epoch (0 before it), as records and log lines carry it.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const OUTCOMES: [Outcome; 4] = Outcome::ALL;
/// The outcome slot before anything was recorded: an invocation dropped in that state (its
/// task aborted, say) is recorded as an error.
const UNSET: u8 = u8::MAX;

fn outcome_index(outcome: Outcome) -> u8 {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0) as u8
}

impl UsageMeter {
    /// Starts metering an invocation of `spec` (its outcome is `error` until told otherwise,
    /// so a task that is aborted or panics is not billed as a success).
    pub(crate) fn start(
        sink: Option<&Arc<dyn UsageSink>>,
        names: &RecordNames,
        spec: &FunctionSpec,
        invocation: &Invocation,
    ) -> Self {
        let Some(sink) = sink else {
            return Self(None);
        };
        let start_unix_ms = now_unix_ms();
        Self(Some(Arc::new(Pending {
            sink: sink.clone(),
            record: Some(UsageRecord {
                v: RECORD_VERSION,
                invocation_id: (&invocation.invocation_id).into(),
                request_id: (&invocation.request_id).into(),
                tenant: names.tenant.clone(),
                app: names.app.clone(),
                function: names.function.clone(),
                version: spec.version,
                trigger: invocation.trigger,
                start_unix_ms,
                duration_us: 0,
                billed_ms: 0,
                memory_mb: spec.limits.memory_mb,
                peak_memory_bytes: 0,
                cpu_us: 0,
                bytes_in: 0,
                bytes_out: 0,
                outcome: Outcome::Error,
                cold_start: false,
            }),
            started: Instant::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            peak_memory: AtomicU64::new(0),
            outcome: AtomicU8::new(UNSET),
            cold_start: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// Whether anything is metered.
    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Records how the invocation ended, overriding anything recorded before.
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        if let Some(p) = &self.0 {
            p.outcome.store(outcome_index(outcome), Ordering::Relaxed);
        }
    }

    /// Records a failure (it wins over a success the guest's task may record later: the
    /// caller saw the failure).
    pub(crate) fn set_error(&self, err: &InvokeError) {
        self.set_outcome(outcome_of(err));
    }

    /// Records the result of the guest's run: a failure as [`Self::set_error`], a success only
    /// if nothing was recorded yet.
    pub(crate) fn set_result<T>(&self, result: &Result<T, InvokeError>) {
        match result {
            Err(e) => self.set_error(e),
            Ok(_) => {
                if let Some(p) = &self.0 {
                    let ok = outcome_index(Outcome::Ok);
                    let _ =
                        p.outcome
                            .compare_exchange(UNSET, ok, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
        }
    }

    /// Records that the invocation had to activate its function's code first.
    pub(crate) fn set_cold_start(&self) {
        if let Some(p) = &self.0 {
            p.cold_start.store(true, Ordering::Relaxed);
        }
    }

    /// Adds received body bytes.
    pub(crate) fn add_bytes_in(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.bytes_in.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds sent body bytes.
    pub(crate) fn add_bytes_out(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records the instance's peak linear memory.
    pub(crate) fn set_peak_memory(&self, bytes: u64) {
        if let Some(p) = &self.0 {
            p.peak_memory.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    fn add_cpu(&self, d: Duration) {
        if let Some(p) = &self.0 {
            p.cpu_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// Runs `fut`, adding the time spent in its polls to the invocation's CPU time and to its
    /// app's use in the governor's window, and, when it ends or is dropped (a timeout), to the
    /// app's moving average per invocation (both decide whether the app's next invocations
    /// queue for a CPU slot, see `fair`). Each poll's start is noted in `slot`, so that an
    /// epoch tick can tell how long the guest has been running.
    pub(crate) async fn timed<F: Future>(
        &self,
        share: &AppShare,
        slot: &CpuSlot,
        fut: F,
    ) -> F::Output {
        struct Tally<'a> {
            meter: &'a UsageMeter,
            share: &'a AppShare,
            total: Duration,
        }
        impl Drop for Tally<'_> {
            fn drop(&mut self) {
                self.meter.add_cpu(self.total);
                self.share.note_cpu(self.total);
            }
        }
        let mut tally = Tally {
            meter: self,
            share,
            total: Duration::ZERO,
        };
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let started = Instant::now();
            slot.polling_from(started, tally.total);
            let result = fut.as_mut().poll(cx);
            let used = started.elapsed();
            tally.total += used;
            share.add_cpu(used);
            result
        })
        .await
    }
}

/// The outcome a failed invocation is recorded with.
pub(crate) fn outcome_of(err: &InvokeError) -> Outcome {
    match err {
        InvokeError::Timeout(_) | InvokeError::CpuBudget(_) => Outcome::Timeout,
        InvokeError::AppAtCapacity(_) => Outcome::Rejected,
        InvokeError::Trap(_)
        | InvokeError::NoResponse
        | InvokeError::GuestError(_)
        | InvokeError::Instantiate(_) => Outcome::Error,
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let outcome = OUTCOMES
            .get(usize::from(self.outcome.load(Ordering::Relaxed)))
            .copied()
            .unwrap_or(Outcome::Error);
        let duration_us = self.started.elapsed().as_micros() as u64;
        record.duration_us = duration_us;
        record.billed_ms = UsageRecord::billed_ms_for(duration_us, outcome);
        record.peak_memory_bytes = self.peak_memory.load(Ordering::Relaxed);
        record.cpu_us = self.cpu_ns.load(Ordering::Relaxed) / 1000;
        record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        record.bytes_out = self.bytes_out.load(Ordering::Relaxed);
        record.outcome = outcome;
        record.cold_start = self.cold_start.load(Ordering::Relaxed);
        self.sink.record(record);
    }
}

/// The store's resource limiter: the function's [`StoreLimits`], plus a count of the linear
/// memory the instance has (memories only grow during an instance's life, so the sum of
/// accepted growths is its peak).
pub(crate) struct Limiter {
    pub(crate) limits: StoreLimits,
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self
                .memory_bytes
                .saturating_add(desired.saturating_sub(current));
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// A body that counts its bytes into an invocation's usage (`inbound`: received, else sent)
/// and keeps the invocation open until it is dropped.
pub(crate) struct MeteredBody<B> {
    inner: B,
    meter: UsageMeter,
    inbound: bool,
}

impl<B> MeteredBody<B> {
    pub(crate) fn inbound(inner: B, meter: UsageMeter) -> Self {
        Self {
            inner,
            meter,
            inbound: true,
        }
    }

    pub(crate) fn outbound(inner: B, meter: UsageMeter) -> Self {
        Self {
            inner,
            meter,
            inbound: false,
        }
    }
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            if this.inbound {
                this.meter.add_bytes_in(n);
            } else {
                this.meter.add_bytes_out(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_metering::TriggerKind;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<UsageRecord>>);

    impl UsageSink for Collect {
        fn record(&self, record: UsageRecord) {
            self.0.lock().unwrap().push(record);
        }

        fn provisioned(&self, _usage: nimbus_metering::ProvisionedUsage) {}
    }

    fn spec() -> FunctionSpec {
        FunctionSpec {
            tenant: "default".into(),
            app: "a".into(),
            function: "f".into(),
            version: 7,
            limits: nimbus_manifest::Limits::default(),
            env: Default::default(),
            allowed_outbound_hosts: vec![],
            key_value_stores: vec![],
            config: Default::default(),
            secrets: vec![],
            buckets: vec![],
            queues: vec![],
        }
    }

    #[tokio::test]
    async fn the_record_is_made_when_the_last_holder_lets_go() {
        let collect = Arc::new(Collect::default());
        let sink: Arc<dyn UsageSink> = collect.clone();
        let spec = spec();
        let invocation = Invocation::new("req-1".into(), TriggerKind::Queue);
        let meter = UsageMeter::start(Some(&sink), &RecordNames::new(&spec), &spec, &invocation);
        let body_side = meter.clone();
        meter.add_bytes_in(10);
        let share = crate::fair::FairShare::new(1, 1).app("t", "a");
        let slot = CpuSlot::new(&share);
        meter
            .timed(&share, &slot, async {
                std::thread::sleep(Duration::from_millis(3))
            })
            .await;
        meter.set_result::<()>(&Ok(()));
        drop(meter);
        assert!(
            collect.0.lock().unwrap().is_empty(),
            "the body still holds it"
        );
        body_side.add_bytes_out(5);
        drop(body_side);
        let records = collect.0.lock().unwrap();
        let r = &records[0];
        assert_eq!((r.bytes_in, r.bytes_out, r.version), (10, 5, 7));
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(r.trigger, TriggerKind::Queue);
        assert!(r.cpu_us >= 3000, "{}", r.cpu_us);
        assert!(r.duration_us >= r.cpu_us);
        assert_eq!(r.billed_ms, r.duration_us.div_ceil(1000));
    }

    #[tokio::test]
    async fn an_abandoned_invocation_is_recorded_as_an_error() {
        let collect = Arc::new(Collect::default());
        let sink: Arc<dyn UsageSink> = collect.clone();
        let spec = spec();
        let invocation = Invocation::new("req-2".into(), TriggerKind::Http);
        drop(UsageMeter::start(
            Some(&sink),
            &RecordNames::new(&spec),
            &spec,
            &invocation,
        ));
        assert_eq!(collect.0.lock().unwrap()[0].outcome, Outcome::Error);
        // Without a sink nothing is metered.
        assert!(!UsageMeter::start(None, &RecordNames::new(&spec), &spec, &invocation).is_on());
    }
}
