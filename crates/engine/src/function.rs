//! A prepared HTTP function version and one request to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_metering::{Outcome, TriggerKind};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::engine::{Engine, LoadedComponent};
use crate::error::{EngineError, InvokeError};
use crate::host::HostState;
use crate::offload::AbortOnDrop;
use crate::provisioned::{Provisioned, Ready, ReplenishOnDrop};
use crate::residency::Resident;
use crate::runtime::{FunctionRuntime, classify};
use crate::spec::{FunctionSpec, Invocation};
use crate::usage::{MeteredBody, UsageMeter};
use nimbus_trace::{KeyValue, Span};

/// The body type of responses produced by functions.
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A function version ready to serve: its capabilities and limits, and its type-checked code,
/// which is released from memory while the function idles and activated again by the next
/// request (see [`crate::residency`]).
#[derive(Clone)]
pub struct HttpFunction {
    rt: Arc<FunctionRuntime>,
    code: Arc<Resident<ProxyPre<HostState>>>,
    provisioned: Arc<Provisioned<ProxyPre<HostState>>>,
}

impl HttpFunction {
    pub(crate) fn new(
        engine: Engine,
        component: &LoadedComponent,
        pre: ProxyPre<HostState>,
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

    /// The function's spec.
    pub fn spec(&self) -> &FunctionSpec {
        &self.rt.spec
    }

    /// Whether the function's code is in memory (false once it scaled to zero).
    pub fn is_resident(&self) -> bool {
        self.code.is_resident()
    }

    /// Invocations of this function version running now.
    pub fn in_flight(&self) -> u32 {
        self.code.in_flight()
    }

    /// Pre-instantiated instances waiting for a request (`min_instances`).
    pub fn ready_instances(&self) -> usize {
        self.provisioned.ready()
    }

    /// Instantiates the function once and drops the instance, without calling it, then makes
    /// its `min_instances` ready (see [`crate::provisioned`]).
    ///
    /// A deploy does this before the version takes traffic, so a component that cannot be
    /// instantiated under its limits (say, its initial memory exceeds `memory_mb`) is rejected
    /// at deploy time, and the first real request finds a warm pool slot (its pages mapped)
    /// instead of paying for that.
    pub async fn warm_up(&self) -> Result<(), EngineError> {
        let mut store = self
            .rt
            .new_store(&Invocation::new("warm-up".into(), TriggerKind::Http));
        self.code
            .prepared()
            .await?
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        self.provisioned.fill().await
    }

    /// Runs one request whose body is in memory and collects the response (status and at most
    /// `max_response` bytes of body): how asynchronous invocations, whose result is stored, call
    /// an HTTP function. `path` may carry a query.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        max_response: usize,
        invocation: Invocation,
    ) -> Result<(u16, Bytes), InvokeError> {
        use http_body_util::BodyExt;
        let bad = |e: String| InvokeError::GuestError(format!("invalid request: {e}"));
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header(hyper::header::HOST, "localhost");
        if let Some(ct) = content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, ct);
        }
        let body = http_body_util::Full::new(body).map_err(
            |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
        );
        let request = builder.body(body).map_err(|e| bad(e.to_string()))?;
        let response = self.handle(request, invocation).await?;
        let status = response.status().as_u16();
        let collected = http_body_util::Limited::new(response.into_body(), max_response)
            .collect()
            .await
            .map_err(|e| InvokeError::GuestError(format!("reading the response body: {e}")))?;
        Ok((status, collected.to_bytes()))
    }

    /// Runs one request in a fresh instance. Returns once the guest has sent the response
    /// head; the body streams on while the guest keeps running, still under the function's
    /// timeout. Dropping the returned future before then stops the guest. The invocation's
    /// usage record is made once the guest is done and the response body was sent or dropped.
    ///
    /// With tracing on, the invocation's span (under `invocation.parent`) lasts until the guest
    /// is done, and the guest sees it as the request's `traceparent`.
    pub async fn handle<B>(
        &self,
        mut req: hyper::Request<B>,
        invocation: Invocation,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use http_body_util::BodyExt;
        let meter = self.rt.meter(&invocation);
        let span = self.rt.span(&invocation);
        span.parent().inject(req.headers_mut());
        let mut span = Some(span);
        let ids = invocation.clone();
        match self.run(req, invocation, &meter, &mut span).await {
            Ok(response) if meter.is_on() => {
                Ok(response.map(|body| MeteredBody::outbound(body, meter).boxed_unsync()))
            }
            Ok(response) => Ok(response),
            Err(err) => {
                meter.set_error(&err);
                if let Some(span) = span.as_mut() {
                    // Failed before the guest's task took the span over.
                    span.set_error(err.to_string());
                }
                self.rt.log_failure(&ids, &err);
                Err(err)
            }
        }
    }

    /// Records a request the platform turned away before it reached the function (429 at
    /// `max_concurrency`): it is metered as `rejected`, never billed.
    pub fn record_rejection(&self, invocation: &Invocation) {
        self.rt.share().note_rejection();
        self.rt.meter(invocation).set_outcome(Outcome::Rejected);
    }

    async fn run<B>(
        &self,
        req: hyper::Request<B>,
        invocation: Invocation,
        meter: &UsageMeter,
        span: &mut Option<Span>,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = self.rt.spec.limits;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.timeout_ms);
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
        let mut span = span.take().unwrap_or_else(Span::none);
        span.set_attribute(KeyValue::new("faas.coldstart", cold));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = req.map(|body| MeteredBody::inbound(body, meter.clone()));
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;

        let task_meter = meter.clone();
        let share = self.rt.share().clone();
        let replenish = ReplenishOnDrop(self.provisioned.clone());
        let slot = store.data().cpu_slot.clone();
        let cpu_bound = share.is_cpu_bound();
        let cpu = self.rt.engine.cpu_runtime();
        let task = crate::offload::spawn_guest(cpu, slot.clone(), cpu_bound, async move {
            // The function counts as busy, and its instance against the app's budget, until
            // the guest is done, body included.
            // Declared first, dropped last: the refill finds the budget and the slot free.
            let _replenish = replenish;
            let held = (busy, budget);
            let wait = share.waits_for_a_slot();
            let run = async {
                if wait {
                    slot.first_slice().await;
                }
                let proxy = match ready {
                    Some(proxy) => proxy,
                    None => pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?,
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|e| classify(&e, store.data().cpu, limits))
            };
            let run = nimbus_trace::in_scope(&span, task_meter.timed(&share, &slot, run));
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_) => Err(InvokeError::Timeout(limits.timeout_ms)),
            };
            task_meter.set_peak_memory(store.data().limits.memory_bytes as u64);
            task_meter.set_result(&result);
            span.record_result(&result);
            // Torn down while the invocation still holds its CPU slot.
            share.drop_counted(store);
            drop(held);
            result
        });
        let mut guard = AbortOnDrop(Some(task.abort_handle()));

        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(response))) => {
                // The guest keeps running to stream the body; the task's own deadline bounds it.
                guard.0 = None;
                Ok(response)
            }
            Ok(Ok(Err(code))) => Err(InvokeError::GuestError(format!("{code:?}"))),
            Ok(Err(_)) => match task.await {
                Ok(Ok(())) => Err(InvokeError::NoResponse),
                Ok(Err(err)) => Err(err),
                Err(join) => Err(InvokeError::Trap(format!("invocation task failed: {join}"))),
            },
            Err(_) => Err(InvokeError::Timeout(limits.timeout_ms)),
        }
    }
}
