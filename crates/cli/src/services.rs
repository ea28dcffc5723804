//! The platform services `nimbus up` opens: key-value backend, secret store, object store,
//! queues.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nimbus_kv::KvBackend;
use nimbus_kv::embedded::EmbeddedKv;
use nimbus_kv::nats_backend::NatsKv;
use nimbus_kv::redis_backend::RedisKv;
use nimbus_objstore::ObjectService;
use nimbus_secrets::{MasterKey, Sealer, SecretStore};

/// The key-value backend, as given to `--kv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvSetting {
    /// redb in `<data>/kv.redb`: durable, one process.
    Embedded,
    /// A Redis server (`redis://…`).
    Redis(String),
    /// A NATS server with JetStream (`nats://…`); keys live in the KV bucket `nimbus-kv`.
    Nats(String),
}

impl std::str::FromStr for KvSetting {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "embedded" {
            Ok(Self::Embedded)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Ok(Self::Redis(s.to_owned()))
        } else if s.starts_with("nats://") {
            Ok(Self::Nats(s.to_owned()))
        } else {
            anyhow::bail!(
                "unknown key-value backend `{s}`: use `embedded`, `redis://HOST:PORT` or `nats://HOST:PORT`"
            )
        }
    }
}

impl std::fmt::Display for KvSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Redis(url) | Self::Nats(url) => f.write_str(url),
        }
    }
}

/// The master key that seals app secrets and S3 access-key secrets: from the operator's key
/// file, or `<data>/secrets.key` (created on first start).
pub(crate) fn master_key(key_file: Option<&Path>, data: &Path) -> anyhow::Result<MasterKey> {
    Ok(match key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secrets key file {}", path.display()))?;
            MasterKey::from_hex(&text)
                .with_context(|| format!("invalid secrets key file {}", path.display()))?
        }
        None => {
            let path = data.join("secrets.key");
            let (key, created) = MasterKey::load_or_create(&path)?;
            if created {
                tracing::info!(path = %path.display(), "created the secrets master key");
            }
            key
        }
    })
}

/// Opens the secret store under `data`.
pub(crate) fn open_secrets(key: &MasterKey, data: &Path) -> anyhow::Result<SecretStore> {
    Ok(SecretStore::open(&data.join("secrets.redb"), key)?)
}

/// The JetStream KV bucket Nimbus keeps its keys in.
const NATS_KV_BUCKET: &str = "nimbus-kv";

pub(crate) async fn open_kv(
    setting: &KvSetting,
    data: &Path,
) -> anyhow::Result<Arc<dyn KvBackend>> {
    Ok(match setting {
        KvSetting::Embedded => {
            let path = data.join("kv.redb");
            Arc::new(
                EmbeddedKv::open(&path).with_context(|| {
                    format!("cannot open the key-value store {}", path.display())
                })?,
            )
        }
        KvSetting::Redis(url) => Arc::new(
            RedisKv::connect(url)
                .await
                .with_context(|| format!("cannot connect to the key-value backend {url}"))?,
        ),
        KvSetting::Nats(url) => Arc::new(
            NatsKv::connect(url, NATS_KV_BUCKET)
                .await
                .with_context(|| format!("cannot connect to the key-value backend {url}"))?,
        ),
    })
}

/// Opens the embedded object store under `<data>/objects`.
pub(crate) fn open_objects(key: &MasterKey, data: &Path) -> anyhow::Result<ObjectService> {
    let dir = data.join("objects");
    ObjectService::open(&dir, Sealer::new(key))
        .with_context(|| format!("cannot open the object store in {}", dir.display()))
}

/// The queue backend, as given to `--queues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSetting {
    /// redb in `<data>/queues.redb`: durable, one process.
    Embedded,
    /// A NATS server with JetStream (`nats://…`); queues live in the stream `NIMBUS_QUEUES`.
    Nats(String),
}

impl std::str::FromStr for QueueSetting {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "embedded" {
            Ok(Self::Embedded)
        } else if s.starts_with("nats://") {
            Ok(Self::Nats(s.to_owned()))
        } else {
            anyhow::bail!("unknown queue backend `{s}`: use `embedded` or `nats://HOST:PORT`")
        }
    }
}

impl std::fmt::Display for QueueSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Nats(url) => f.write_str(url),
        }
    }
}

/// Opens the queue backend.
pub(crate) async fn open_queues(
    setting: &QueueSetting,
    data: &Path,
) -> anyhow::Result<Arc<dyn nimbus_queue::QueueBackend>> {
    Ok(match setting {
        QueueSetting::Embedded => {
            let path = data.join("queues.redb");
            Arc::new(
                nimbus_queue::embedded::EmbeddedQueues::open(&path)
                    .with_context(|| format!("cannot open the queues {}", path.display()))?,
            )
        }
        QueueSetting::Nats(url) => Arc::new(
            nimbus_queue::nats::NatsQueues::connect(url)
                .await
                .with_context(|| format!("cannot connect to the queue backend {url}"))?,
        ),
    })
}
