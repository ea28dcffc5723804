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
use nimbus_control::{Platform, StateStore};
use nimbus_engine::{Engine, EngineConfig, Services};
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_scaling::KeepAlivePolicy;
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
    /// Gateway limits and timeouts.
    pub gateway: GatewayConfig,
    /// Bytes of each pooled instance slot kept resident between requests (see
    /// [`EngineConfig::keep_resident_bytes`]); `None` keeps the engine's default.
    pub keep_resident_bytes: Option<usize>,
    /// Where the key-value stores live.
    pub kv: KvSetting,
    /// The secrets master key file; `None`: `<data>/secrets.key`, created if missing.
    pub secrets_key_file: Option<PathBuf>,
    /// Where the queues live.
    pub queues: QueueSetting,
    /// When idle functions release their code (`--keep-alive`).
    pub keep_alive: KeepAlivePolicy,
    /// How often idle functions are checked against it; `None` keeps the engine's default
    /// (1 s). Tests shorten it.
    pub reap_interval: Option<std::time::Duration>,
    /// Guests of one app that may run CPU-bound slices at once (`--cpu-slots-per-app`);
    /// `None` keeps the engine's default (the machine's parallelism).
    pub cpu_slots_per_app: Option<usize>,
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
    platform: Arc<Platform>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// How long shutdown waits for running event invocations (queue, cron) to finish.
const EVENT_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Stops accepting, drains in-flight requests and waits for both servers to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.platform.shutdown(EVENT_DRAIN).await;
        for task in self.tasks {
            task.await.context("server task panicked")??;
        }
        Ok(())
    }
}

/// Opens the data dir, restores every app and starts both servers.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data dir {}", data.display()))?;
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
    if let Some(bytes) = config.keep_resident_bytes {
        engine_config.keep_resident_bytes = bytes;
    }
    engine_config.keep_alive = config.keep_alive.clone();
    if let Some(interval) = config.reap_interval {
        engine_config.reap_interval = interval;
    }
    if let Some(slots) = config.cpu_slots_per_app {
        engine_config.cpu_slots_per_app = slots;
    }
    let raw_kv = open_kv(&config.kv, data).await?;
    let master_key = master_key(config.secrets_key_file.as_deref(), data)?;
    let objects = open_objects(&master_key, data)?;
    let secrets = Arc::new(open_secrets(&master_key, data)?);
    let queues = open_queues(&config.queues, data).await?;
    // Every write through Nimbus (functions, REST, S3) passes these wrappers, which hand
    // changes to the object and key-value triggers.
    let router = Arc::new(ChangeRouter::new(queues.clone()));
    let kv: Arc<dyn nimbus_kv::KvBackend> =
        Arc::new(ObservedKv::new(raw_kv.clone(), router.clone()));
    let object_store: Arc<dyn nimbus_objstore::ObjectStore> =
        Arc::new(ObservedObjects::new(objects.store.clone(), router.clone()));
    let services = Services {
        kv: Some(kv.clone()),
        secrets: Some(secrets),
        objects: Some(object_store.clone()),
        queues: Some(queues.clone()),
    };
    let engine = Engine::new(engine_config, services)?;
    tracing::info!(pooling = engine.pooling(), "engine ready");
    let gateway = Arc::new(Gateway::new(config.gateway.clone()));

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

    let triggers = nimbus_triggers::Triggers::new(Some(queues), Some(raw_kv), Some(router));
    let platform = Arc::new(Platform::new(
        engine,
        gateway.clone(),
        store,
        blobs,
        triggers,
    ));
    let restored = platform.restore().await?;

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
    });
    let tasks = vec![
        tokio::spawn(gateway.serve(gateway_listener, signal(watcher.clone()))),
        tokio::spawn(nimbus_objstore::server::serve(
            s3_listener,
            objects.s3_service_over(object_store),
            signal(watcher.clone()),
        )),
        tokio::spawn(nimbus_control::api::serve(
            api_listener,
            state,
            signal(watcher),
        )),
    ];
    Ok(Running {
        gateway_addr,
        api_addr,
        s3_addr,
        new_token,
        restored,
        platform,
        shutdown,
        tasks,
    })
}
