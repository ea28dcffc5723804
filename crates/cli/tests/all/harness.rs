//! A real Nimbus started in-process on port 0 with a temporary data dir, plus helpers to
//! deploy components and call functions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};

use nimbus_cli::client::ApiClient;
use nimbus_cli::server::{self, KvSetting, QueueSetting, Running, ServerConfig};
use nimbus_control::types::{DeployRequest, DeployResponse};
use nimbus_gateway::GatewayConfig;
use sha2::{Digest, Sha256};

/// Everything logged by the platform during the test run (all tests share it; filter by
/// request id).
pub fn logs() -> String {
    let buffer = LOG.lock().unwrap();
    String::from_utf8_lossy(&buffer).into_owned()
}

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// The API token of each data dir started by the harness (it is only known on first start).
static TOKENS: Mutex<BTreeMap<std::path::PathBuf, String>> = Mutex::new(BTreeMap::new());
static INIT: Once = Once::new();

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .init();
    });
}

/// A running Nimbus.
pub struct Nimbus {
    running: Option<Running>,
    pub data_dir: Arc<tempfile::TempDir>,
    pub api: ApiClient,
    pub token: String,
    pub gateway_url: String,
    pub http: reqwest::Client,
}

impl Nimbus {
    /// Starts a fresh Nimbus.
    pub async fn start() -> Self {
        Self::start_with(
            Arc::new(tempfile::tempdir().unwrap()),
            None,
            GatewayConfig::default(),
            KvSetting::Embedded,
        )
        .await
    }

    /// Starts a fresh Nimbus in a data dir the test prepared.
    pub async fn start_in(data_dir: Arc<tempfile::TempDir>) -> Self {
        Self::start_config(data_dir, None, |_| {}).await
    }

    /// Starts a fresh Nimbus with another key-value backend.
    pub async fn start_with_kv(kv: KvSetting) -> Self {
        Self::start_with(
            Arc::new(tempfile::tempdir().unwrap()),
            None,
            GatewayConfig::default(),
            kv,
        )
        .await
    }

    /// Starts Nimbus with a gateway configuration.
    pub async fn start_with_gateway(gateway: GatewayConfig) -> Self {
        Self::start_with(
            Arc::new(tempfile::tempdir().unwrap()),
            None,
            gateway,
            KvSetting::Embedded,
        )
        .await
    }

    /// Starts a fresh Nimbus with another queue backend.
    pub async fn start_with_queues(queues: QueueSetting) -> Self {
        Self::start_full(
            Arc::new(tempfile::tempdir().unwrap()),
            None,
            GatewayConfig::default(),
            KvSetting::Embedded,
            queues,
        )
        .await
    }

    async fn start_with(
        data_dir: Arc<tempfile::TempDir>,
        token: Option<String>,
        gateway: GatewayConfig,
        kv: KvSetting,
    ) -> Self {
        Self::start_full(data_dir, token, gateway, kv, QueueSetting::Embedded).await
    }

    /// Starts a fresh Nimbus with the default settings changed by `configure`.
    pub async fn start_configured(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_config(data_dir, None, configure).await
    }

    async fn start_full(
        data_dir: Arc<tempfile::TempDir>,
        token: Option<String>,
        gateway: GatewayConfig,
        kv: KvSetting,
        queues: QueueSetting,
    ) -> Self {
        Self::start_config(data_dir, token, |config| {
            config.gateway = gateway;
            config.kv = kv;
            config.queues = queues;
        })
        .await
    }

    async fn start_config(
        data_dir: Arc<tempfile::TempDir>,
        token: Option<String>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        init_logging();
        let mut config = ServerConfig {
            data_dir: data_dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            s3_listen: "127.0.0.1:0".parse().unwrap(),
            reset_token: false,
            listeners: Default::default(),
            s3_auth: Default::default(),
            gateway: GatewayConfig::default(),
            engine: Default::default(),
            prices: Default::default(),
            metering: true,
            kv: KvSetting::Embedded,
            secrets_key_file: None,
            queues: QueueSetting::Embedded,
            tracing: None,
            log_retention: Default::default(),
        };
        configure(&mut config);
        let running = server::start(config).await.unwrap();
        let token = running.new_token.clone().or(token).expect("token");
        TOKENS
            .lock()
            .unwrap()
            .insert(data_dir.path().to_owned(), token.clone());
        let api = ApiClient::new(format!("http://{}", running.api_addr), Some(token.clone()));
        Self {
            gateway_url: format!("http://{}", running.gateway_addr),
            running: Some(running),
            data_dir,
            api,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// Stops this Nimbus and starts another on the same data dir.
    pub async fn restart(mut self) -> Self {
        self.running.take().unwrap().shutdown().await.unwrap();
        Self::restart_in(self.data_dir.clone()).await
    }

    /// Starts Nimbus again on a data dir this harness started before (after `stop`). The API
    /// token is only printed on the first start, so the harness remembers it per data dir.
    pub async fn restart_in(data_dir: Arc<tempfile::TempDir>) -> Self {
        let token = TOKENS
            .lock()
            .unwrap()
            .get(data_dir.path())
            .cloned()
            .expect("data dir was started by this harness");
        Self::start_with(
            data_dir,
            Some(token),
            GatewayConfig::default(),
            KvSetting::Embedded,
        )
        .await
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }

    /// The running servers.
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Uploads components and deploys `manifest`; `components` maps function → wasm file.
    pub async fn deploy(
        &self,
        manifest: &str,
        components: &[(&str, &Path)],
    ) -> anyhow::Result<DeployResponse> {
        let mut digests = BTreeMap::new();
        for (function, path) in components {
            let bytes = std::fs::read(path).unwrap();
            let digest = hex::encode(Sha256::digest(&bytes));
            if !self.api.has_blob(&digest).await? {
                self.api.put_blob(&digest, bytes.into()).await?;
            }
            digests.insert(function.to_string(), digest);
        }
        self.api
            .deploy(&DeployRequest {
                manifest: manifest.to_owned(),
                manifest_file: None,
                components: digests,
            })
            .await
    }

    /// GET a path on the gateway.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.gateway_url))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Nimbus {
    fn drop(&mut self) {
        // Tests that end without `stop` drop the servers with the runtime.
        self.running.take();
    }
}

/// A one-function manifest.
pub fn manifest(app: &str, function: &str, routes: &[&str], extra: &str) -> String {
    let routes: Vec<String> = routes.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[app]\nname = \"{app}\"\n\n[[function]]\nname = \"{function}\"\ncomponent = \"{function}.wasm\"\nroutes = [{}]\n{extra}\n",
        routes.join(", ")
    )
}

/// A real HTTP upstream on port 0 that answers every request with `body` (as JSON) after
/// `delay`. Runs until the test's runtime ends.
pub async fn upstream(body: &'static str, delay: std::time::Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    let mut resp = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(body.as_bytes()),
                    ));
                    resp.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

impl Nimbus {
    /// Deploys the C guest `guest` as the only function of `app`, named like the guest.
    pub async fn deploy_guest(&self, app: &str, guest: &str, routes: &[&str], extra: &str) {
        let component = crate::guests::c(guest);
        self.deploy(&manifest(app, guest, routes, extra), &[(guest, &component)])
            .await
            .unwrap();
    }

    /// The body of an authenticated GET of a control-API path (`/metrics`, `/v1/…`), as text.
    pub async fn api_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.api.base()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
