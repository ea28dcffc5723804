//! The composition root of `nimbus up`: builds the engine, gateway and control plane from a
//! [`ServerConfig`], binds the listeners and runs until shutdown. Integration tests start
//! Nimbus in-process through [`start`] on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::services::{KvSetting, QueueSetting};
use crate::services::{master_key, open_kv, open_objects, open_queues, open_secrets};
use anyhow::Context;
use nimbus_control::api::ApiState;
use nimbus_control::blobs::BlobStore;
use nimbus_control::token::{self, TokenCheck};
use nimbus_control::types::Info;
use nimbus_control::usage_api::UsageService;
use nimbus_control::{Platform, StateStore};
use nimbus_engine::{Engine, EngineConfig, Services};
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_logs::{LogDb, Logs, Retention};
use nimbus_metering::{Meter, Metrics, PriceTable, UsageDb};
use nimbus_scaling::KeepAlivePolicy;
use nimbus_serve::ServeConfig;
use nimbus_trace::{OtlpConfig, Tracer};
use nimbus_triggers::changes::{ChangeRouter, ObservedKv, ObservedObjects};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest component upload accepted.
const MAX_COMPONENT_BYTES: u64 = 512 << 20;

/// Settings of a running platform.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where all state lives.
    pub data_dir: PathBuf,
    /// Function traffic listener.
    pub listen: SocketAddr,
    /// Control API listener.
    pub api_listen: SocketAddr,
    /// S3 API listener.
    pub s3_listen: SocketAddr,
    /// Replace the API token with a new one at start.
    pub reset_token: bool,
    /// What the S3 API accepts: the region clients sign for, SigV2.
    pub s3_auth: nimbus_objstore::guard::AuthPolicy,
    /// Timeouts and connection caps of each listener (gateway, control API, S3). The caps
    /// are fitted into the open-file limit at start (`nimbus_serve::fit_connection_caps`).
    pub listeners: ServeConfig,
    /// Gateway limits and timeouts.
    pub gateway: GatewayConfig,
    /// Engine tunables (`--keep-alive`, `--cpu-slots-per-app`, …).
    pub engine: EngineTuning,
    /// What usage costs (the config file's `[prices]`; default: Lambda's x86 prices).
    pub prices: PriceTable,
    /// Meter invocations, collect metrics and keep function logs (`--no-metering` turns all
    /// three off, for measuring their cost).
    pub metering: bool,
    /// Where the key-value stores live.
    pub kv: KvSetting,
    /// The secrets master key file; `None`: `<data>/secrets.key`, created if missing.
    pub secrets_key_file: Option<PathBuf>,
    /// Where the queues live.
    pub queues: QueueSetting,
    /// How long and how much function log the store keeps (`--log-retention`,
    /// `--log-max-mb`).
    pub log_retention: Retention,
    /// Where traces are exported (`--otlp-endpoint`); `None`: tracing is off.
    pub tracing: Option<OtlpConfig>,
}

/// Engine settings an operator (or a test) may change; `None` keeps the engine's default
/// (see [`EngineConfig`], which documents each).
#[derive(Debug, Clone, Default)]
pub struct EngineTuning {
    /// Bytes of each pooled instance slot kept resident between requests.
    pub keep_resident_bytes: Option<usize>,
    /// When idle functions release their code (`--keep-alive`).
    pub keep_alive: KeepAlivePolicy,
    /// How often idle functions are checked against it (default 1 s; tests shorten it).
    pub reap_interval: Option<std::time::Duration>,
    /// Guests of one app that may run CPU-bound slices at once (`--cpu-slots-per-app`).
    pub cpu_slots_per_app: Option<usize>,
    /// Nice value of the threads running CPU-bound guests (`--cpu-nice`).
    pub cpu_nice: Option<i32>,
    /// How often running guests yield and are charged CPU (`--epoch-tick-ms`).
    pub epoch_tick: Option<std::time::Duration>,
    /// Instances one app may have alive at once (`--max-instances-per-app`).
    pub max_instances_per_app: Option<u32>,
    /// Instances alive at once on the machine (`--max-instances`).
    pub max_instances: Option<u32>,
    /// Use the pooling allocator (default true; false forces on-demand allocation).
    pub pooling: Option<bool>,
}

impl EngineTuning {
    fn apply(&self, engine: &mut EngineConfig) {
        if let Some(bytes) = self.keep_resident_bytes {
            engine.keep_resident_bytes = bytes;
        }
        engine.keep_alive = self.keep_alive.clone();
        if let Some(interval) = self.reap_interval {
            engine.reap_interval = interval;
        }
        if let Some(slots) = self.cpu_slots_per_app {
            engine.cpu_slots_per_app = slots;
        }
        if let Some(nice) = self.cpu_nice {
            engine.cpu_nice = nice;
        }
        if let Some(tick) = self.epoch_tick {
            engine.epoch_tick = tick;
        }
        if let Some(n) = self.max_instances {
            engine.max_instances = n;
            // Keep the per-app budget at its default share of a resized pool.
            engine.max_instances_per_app = (n / 2).max(1);
        }
        if let Some(n) = self.max_instances_per_app {
            engine.max_instances_per_app = n;
        }
        if let Some(pooling) = self.pooling {
            engine.pooling = pooling;
        }
    }
}

/// A started platform.
pub struct Running {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// Where the control API listens.
    pub api_addr: SocketAddr,
    /// Where the S3 API listens.
    pub s3_addr: SocketAddr,
    /// The API token, if it was created (or reset) by this start.
    pub new_token: Option<String>,
    /// Number of apps restored from the state store.
    pub restored: usize,
    /// Whether the engine runs on the pooling allocator (false: it fell back, or was told
    /// to use on-demand allocation).
    pub pooling: bool,
    platform: Arc<Platform>,
    meter: Arc<Meter>,
    logs: Option<Arc<Logs>>,
    tracer: Tracer,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    sweeper: JoinHandle<()>,
}

impl Running {
    /// Removes the component blobs no version references, older than `grace` (the platform
    /// does this itself every [`BLOB_SWEEP_EVERY`]).
    pub async fn sweep_blobs(&self, grace: std::time::Duration) -> anyhow::Result<usize> {
        Ok(self.platform.sweep_blobs(grace).await?)
    }
}

/// How often unreferenced component blobs are looked for.
pub const BLOB_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// How old an unreferenced blob must be to go: an upload is followed by its deploy within
/// seconds, and a client that looks a blob up renews this period.
pub const BLOB_GRACE: std::time::Duration = std::time::Duration::from_secs(900);

/// Sweeps blobs at start and then every [`BLOB_SWEEP_EVERY`].
fn spawn_blob_sweeper(platform: Arc<Platform>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(BLOB_SWEEP_EVERY);
        loop {
            every.tick().await;
            if let Err(e) = platform.sweep_blobs(BLOB_GRACE).await {
                tracing::warn!(error = %e, "sweeping unreferenced blobs failed");
            }
        }
    })
}

/// How long shutdown waits for running event invocations (queue, cron) to finish.
const EVENT_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Stops accepting, drains in-flight requests and waits for both servers to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.sweeper.abort();
        self.platform.shutdown(EVENT_DRAIN).await;
        for task in self.tasks {
            task.await.context("server task panicked")??;
        }
        // Every invocation has ended. Dropping the live functions reports their kept
        // instances' last provisioned span; then write usage and log lines before returning.
        self.platform.unload().await;
        self.meter.close();
        if let Some(logs) = &self.logs {
            logs.close();
        }
        if let Err(e) = self.tracer.shutdown().await {
            tracing::warn!(error = %e, "traces of the last requests were not exported");
        }
        Ok(())
    }
}

/// The listeners' settings with their connection caps fitted into the open-file limit, so
/// that a flood on one listener cannot take the descriptors the others need.
fn fit_listeners(wanted: &ServeConfig) -> ServeConfig {
    let limit = nimbus_serve::open_file_limit();
    let cap = nimbus_serve::fit_connection_caps(limit, LISTENERS, wanted.max_connections);
    if cap < wanted.max_connections {
        tracing::warn!(
            wanted = wanted.max_connections,
            cap,
            open_file_limit = ?limit,
            "connection cap per listener lowered to fit the open-file limit (raise `ulimit -n`)"
        );
    }
    ServeConfig {
        max_connections: cap,
        ..wanted.clone()
    }
}

/// Gateway, control API, S3 API.
const LISTENERS: usize = 3;

/// Opens the data dir, restores every app and starts the servers.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    let data = &config.data_dir;
    crate::data_dir::prepare(data)?;
    let store = StateStore::open(&data.join("state.redb"))
        .with_context(|| format!("cannot open state store in {}", data.display()))?;
    let new_token = if config.reset_token {
        Some(token::rotate(&store)?)
    } else {
        token::ensure(&store)?
    };
    let token = TokenCheck::load(&store)?;
    let blobs = BlobStore::open(&data.join("blobs"), MAX_COMPONENT_BYTES)?;
    let mut engine_config = EngineConfig::new(data.join("cache"));
    config.engine.apply(&mut engine_config);
    let raw_kv = open_kv(&config.kv, data).await?;
    let master_key = master_key(config.secrets_key_file.as_deref(), data)?;
    let objects = open_objects(&master_key, data)?;
    let secrets = Arc::new(open_secrets(&master_key, data)?);
    let queues = open_queues(&config.queues, data).await?;
    // Every write through Nimbus (functions, REST, S3) passes these wrappers, which hand
    // changes to the object and key-value triggers.
    let router = Arc::new(ChangeRouter::new(queues.clone()));
    let metrics = config.metering.then(|| Arc::new(Metrics::new()));
    let tracer = match &config.tracing {
        Some(otlp) => Tracer::otlp(otlp)?,
        None => Tracer::off(),
    };
    let kv: Arc<dyn nimbus_kv::KvBackend> = Arc::new(
        ObservedKv::new(raw_kv.clone(), router.clone())
            .with_metrics(metrics.clone())
            .with_tracer(tracer.clone()),
    );
    let object_store: Arc<dyn nimbus_objstore::ObjectStore> = Arc::new(
        ObservedObjects::new(objects.store.clone(), router.clone())
            .with_metrics(metrics.clone())
            .with_tracer(tracer.clone()),
    );
    let usage_db = UsageDb::open(&data.join("usage.redb"))?;
    let meter = Arc::new(Meter::start(
        usage_db.clone(),
        std::time::Duration::from_millis(UsageDb::RECORD_RETENTION_MS),
        metrics.clone(),
    )?);
    let sink: Option<Arc<dyn nimbus_metering::UsageSink>> = match config.metering {
        true => Some(meter.clone()),
        false => None,
    };
    let logs = match config.metering {
        true => Some(Arc::new(Logs::start(
            LogDb::open(&data.join("logs.redb"))?,
            config.log_retention,
        )?)),
        false => None,
    };
    let services = Services {
        kv: Some(kv.clone()),
        secrets: Some(secrets),
        objects: Some(object_store.clone()),
        queues: Some(queues.clone()),
        usage: sink,
        logs: logs.clone().map(|l| -> Arc<dyn nimbus_logs::LogSink> { l }),
        tracer: tracer.clone(),
    };
    let engine = Engine::new(engine_config, services)?;
    let pooling = engine.pooling();
    tracing::info!(pooling, "engine ready");
    let gateway = Arc::new(Gateway::new(GatewayConfig {
        tracer: tracer.clone(),
        ..config.gateway.clone()
    }));

    let gateway_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (function traffic)", config.listen))?;
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (control API)", config.api_listen))?;
    let s3_listener = TcpListener::bind(config.s3_listen)
        .await
        .with_context(|| format!("cannot listen on {} (S3 API)", config.s3_listen))?;
    let gateway_addr = gateway_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let s3_addr = s3_listener.local_addr()?;

    let listeners = fit_listeners(&config.listeners);

    let triggers = nimbus_triggers::Triggers::new(Some(queues), Some(raw_kv), Some(router));
    let platform = Arc::new(Platform::new(
        engine,
        gateway.clone(),
        store,
        blobs,
        triggers,
    ));
    let restored = platform.restore().await?;
    let sweeper = spawn_blob_sweeper(platform.clone());

    let (shutdown, watcher) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let state = Arc::new(ApiState {
        platform: platform.clone(),
        token,
        info: Info {
            version: env!("CARGO_PKG_VERSION").into(),
            gateway_url: format!("http://{gateway_addr}"),
            s3_url: Some(format!("http://{s3_addr}")),
        },
        kv,
        keys: Some(objects.keys.clone()),
        usage: config.metering.then(|| UsageService {
            db: usage_db,
            meter: meter.clone(),
            prices: config.prices.clone(),
        }),
        metrics,
        logs: logs.clone(),
    });
    let tasks = vec![
        tokio::spawn(gateway.serve(gateway_listener, listeners.clone(), signal(watcher.clone()))),
        tokio::spawn(nimbus_objstore::server::serve(
            s3_listener,
            objects.s3_service_over(object_store, config.s3_auth.clone()),
            listeners.clone(),
            signal(watcher.clone()),
        )),
        tokio::spawn(nimbus_control::api::serve(
            api_listener,
            state,
            listeners,
            signal(watcher),
        )),
    ];
    Ok(Running {
        gateway_addr,
        api_addr,
        s3_addr,
        new_token,
        restored,
        pooling,
        platform,
        meter,
        logs,
        tracer,
        shutdown,
        tasks,
        sweeper,
    })
}
