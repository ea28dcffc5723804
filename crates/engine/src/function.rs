//! A prepared function version and one invocation of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_manifest::{Limits, OutboundHost};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::blobstore::BlobCtx;
use crate::engine::Engine;
use crate::error::{EngineError, InvokeError};
use crate::guest_log::{GuestLog, LogTags};
use crate::host::{CpuMeter, HostState};
use crate::keyvalue::KvCtx;
use crate::outbound::OutboundPolicy;
use wasmtime_wasi_config::WasiConfigVariables;

/// The body type of responses produced by functions.
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// What a function version is allowed to do and how it is named in logs.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The tenant owning the app (and its key-value stores).
    pub tenant: String,
    /// The app the function belongs to.
    pub app: String,
    /// The function's name.
    pub function: String,
    /// The app version this function belongs to.
    pub version: u64,
    /// Resource limits.
    pub limits: Limits,
    /// Environment variables visible to the guest.
    pub env: BTreeMap<String, String>,
    /// Hosts the guest may call.
    pub allowed_outbound_hosts: Vec<OutboundHost>,
    /// Key-value stores the guest may open.
    pub key_value_stores: Vec<String>,
    /// `wasi:config` values.
    pub config: BTreeMap<String, String>,
    /// Secrets of the app also served through `wasi:config`, read at each invocation (so a
    /// `nimbus secret set` reaches the next request without a redeploy).
    pub secrets: Vec<String>,
    /// Buckets the guest may open through `wasi:blobstore`.
    pub buckets: Vec<String>,
}

/// Per-request context handed in by the gateway.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request id, echoed in `x-request-id` and tagged on every log line.
    pub request_id: Arc<str>,
}

/// A function version ready to serve: a pre-instantiated component plus its limits.
#[derive(Clone)]
pub struct HttpFunction {
    engine: Engine,
    pre: ProxyPre<HostState>,
    spec: Arc<FunctionSpec>,
    env: Arc<[(String, String)]>,
    allowed: Arc<[OutboundHost]>,
    kv: KvCtx,
    blob: BlobCtx,
    config: Arc<WasiConfigVariables>,
    secrets: Arc<[String]>,
    app: Arc<str>,
    name: Arc<str>,
}

impl HttpFunction {
    pub(crate) fn new(engine: Engine, pre: ProxyPre<HostState>, spec: FunctionSpec) -> Self {
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
            config: Arc::new(spec.config.clone().into_iter().collect()),
            secrets: spec.secrets.clone().into(),
            app: spec.app.as_str().into(),
            name: spec.function.as_str().into(),
            engine,
            pre,
            spec: Arc::new(spec),
        }
    }

    /// The function's spec.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Instantiates the function once and drops the instance, without calling it.
    ///
    /// A deploy does this before the version takes traffic, so a component that cannot be
    /// instantiated under its limits (say, its initial memory exceeds `memory_mb`) is rejected
    /// at deploy time, and the first real request finds a warm pool slot (its pages mapped)
    /// instead of paying for that.
    pub async fn warm_up(&self) -> Result<(), EngineError> {
        let mut store = self.new_store(&Invocation {
            request_id: "warm-up".into(),
        });
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| EngineError::Instantiate(format!("{e:#}")))
    }

    /// Runs one request in a fresh instance. Returns once the guest has sent the response
    /// head; the body streams on while the guest keeps running, still under the function's
    /// timeout. Dropping the returned future before then stops the guest.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
        invocation: Invocation,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = self.spec.limits;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.timeout_ms);
        let mut store = self.new_store(&invocation);
        let (tx, rx) = tokio::sync::oneshot::channel();
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

        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|e| classify(&e, store.data().cpu, limits))
            };
            match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_) => Err(InvokeError::Timeout(limits.timeout_ms)),
            }
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

    fn new_store(&self, invocation: &Invocation) -> Store<HostState> {
        let config = self.engine.config();
        let limits = self.spec.limits;
        let log = GuestLog::new(
            LogTags {
                request_id: invocation.request_id.clone(),
                app: self.app.clone(),
                function: self.name.clone(),
            },
            config.guest_log_limit,
        );
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(log.stdout())
            .stderr(log.stderr());
        let memory_bytes = usize::try_from(u64::from(limits.memory_mb) << 20).unwrap_or(usize::MAX);
        let tick_ms = config.epoch_tick.as_millis().max(1) as u64;
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            kv: self.kv.clone(),
            blob: self.blob.clone(),
            config: self.config_values(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            outbound: OutboundPolicy::new(self.allowed.clone(), invocation.request_id.clone()),
            cpu: CpuMeter {
                budget_ticks: limits.cpu_time_ms.div_ceil(tick_ms),
                used_ticks: 0,
                exhausted: false,
            },
        };
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let cpu = &mut ctx.data_mut().cpu;
            cpu.used_ticks += 1;
            if cpu.used_ticks > cpu.budget_ticks {
                cpu.exhausted = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield so a busy guest shares its worker thread with other requests.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

fn classify(err: &wasmtime::Error, cpu: CpuMeter, limits: Limits) -> InvokeError {
    if cpu.exhausted {
        return InvokeError::CpuBudget(limits.cpu_time_ms);
    }
    InvokeError::Trap(format!("{err:?}"))
}

/// Aborts the invocation task when the caller goes away before the response head.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
