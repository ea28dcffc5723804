//! Where things are: the server's settings (flag > env > config file > default) and the
//! client's credentials file, which `nimbus up` writes so that client commands on the same
//! machine find the API and its token without copy-paste (as kubectl finds its kubeconfig).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Default function-traffic address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default control-API address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";
/// Default S3 API address (MinIO's port, so S3 clients' habits carry over).
pub const DEFAULT_S3_LISTEN: &str = "127.0.0.1:9000";

/// The `nimbus up` config file (`--config`), every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Function traffic address.
    pub listen: Option<SocketAddr>,
    /// Control API address.
    pub api_listen: Option<SocketAddr>,
    /// S3 API address.
    pub s3_listen: Option<SocketAddr>,
    /// Key-value backend (see [`crate::server::KvSetting`]).
    pub kv: Option<String>,
    /// Queue backend (see [`crate::server::QueueSetting`]).
    pub queues: Option<String>,
    /// Secrets master key file.
    pub secrets_key_file: Option<PathBuf>,
    /// The price table usage is billed with (`[prices]`; default: Lambda's x86 prices).
    pub prices: Option<nimbus_metering::PriceTable>,
}

impl ServerFile {
    /// Reads a config file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// The default data dir: `$XDG_DATA_HOME/nimbus` or `~/.local/share/nimbus`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("nimbus");
    }
    home().join(".local/share/nimbus")
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// The client credentials file: `$NIMBUS_CONFIG`, else `$XDG_CONFIG_HOME/nimbus/config.json`,
/// else `~/.config/nimbus/config.json`.
pub fn client_config_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NIMBUS_CONFIG") {
        return PathBuf::from(path);
    }
    let base =
        std::env::var_os("XDG_CONFIG_HOME").map_or_else(|| home().join(".config"), PathBuf::from);
    base.join("nimbus/config.json")
}

/// What a client needs to reach the control API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Base URL of the control API.
    pub api: String,
    /// The API token.
    #[serde(default)]
    pub token: Option<String>,
}

impl ClientConfig {
    /// Reads the credentials file, if there is one.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("invalid client config {}", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the credentials file, readable by the owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        {
            use std::io::Write;
            #[cfg(unix)]
            use std::os::unix::fs::OpenOptionsExt;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            options.mode(0o600);
            let mut file = options
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}
