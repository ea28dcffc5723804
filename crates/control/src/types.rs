//! Wire types of the control API (`/v1`) and of the stored state. Typed and versioned: the
//! CLI uses the same structs, and `docs/openapi.yaml` describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/apps`: deploy a new version of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The `nimbus.toml` text.
    pub manifest: String,
    /// The file name to use in manifest error messages (default `nimbus.toml`).
    #[serde(default)]
    pub manifest_file: Option<String>,
    /// Function name → SHA-256 (hex) of its component, uploaded before with
    /// `PUT /v1/blobs/{digest}`.
    pub components: BTreeMap<String, String>,
}

/// The result of a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    /// The app after the deploy.
    pub app: AppStatus,
    /// How each distinct component was loaded.
    pub components: Vec<ComponentLoad>,
}

/// How one component was loaded during a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentLoad {
    /// SHA-256 of the component.
    pub digest: String,
    /// True if the compiled artifact came from the cache (nothing was compiled).
    pub cache_hit: bool,
    /// Milliseconds spent loading (compiling on a miss).
    pub load_ms: u64,
}

/// `POST /v1/apps/{app}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Version to activate; default: the one before the active version.
    #[serde(default)]
    pub version: Option<u64>,
}

/// An app as listed and shown by the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppStatus {
    /// App name.
    pub name: String,
    /// The version taking traffic.
    pub active_version: u64,
    /// Every stored version, oldest first.
    pub versions: Vec<VersionInfo>,
    /// The active version's functions.
    pub functions: Vec<FunctionStatus>,
}

/// One stored version of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number, from 1.
    pub version: u64,
    /// When it was deployed, seconds since the Unix epoch.
    pub created_at: u64,
}

/// A function of the active version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FunctionStatus {
    /// Function name.
    pub name: String,
    /// Its routes, as written in the manifest.
    pub routes: Vec<String>,
    /// SHA-256 of its component.
    pub component: String,
    /// Memory cap in MiB.
    pub memory_mb: u32,
    /// Wall-clock timeout in ms.
    pub timeout_ms: u64,
    /// Concurrency limit.
    pub max_concurrency: u32,
    /// Instances kept ready (0: the function scales to zero when idle).
    #[serde(default)]
    pub min_instances: u32,
    /// Whether the function's code is in memory now (`false`: scaled to zero, the next call
    /// activates it). Absent when unknown (while a deploy is in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident: Option<bool>,
}

/// `GET /v1/info`: what the CLI needs to print URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// Nimbus version.
    pub version: String,
    /// Base URL of the function gateway.
    pub gateway_url: String,
    /// Base URL of the S3 API, if this server runs one.
    #[serde(default)]
    pub s3_url: Option<String>,
}

/// `GET /v1/kv/{store}`: one page of keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    /// Keys in order (lexicographic on the embedded backend).
    pub keys: Vec<String>,
    /// Pass as `?cursor=` for the next page; absent when the listing is complete.
    pub cursor: Option<String>,
}

/// `GET /v1/apps/{app}/queues[/{queue}]`: a declared queue and its message counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Largest message accepted, in bytes.
    pub max_message_bytes: u32,
    /// Most messages held at once; sends beyond get 429.
    pub max_messages: u32,
    /// Messages visible now.
    pub ready: u64,
    /// Messages waiting for a delay or a retry backoff.
    pub delayed: u64,
    /// Messages leased to a consumer.
    pub in_flight: u64,
    /// The function consuming it (its `[[trigger.queue]]`), if any.
    pub consumer: Option<String>,
    /// Where that trigger dead-letters, if anywhere.
    pub dead_letter_queue: Option<String>,
    /// The queues whose trigger dead-letters into this one.
    #[serde(default)]
    pub dead_letter_for: Vec<String>,
}

/// `POST /v1/apps/{app}/functions/{function}/invocations`: the accepted invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationAccepted {
    /// Its record (status `queued`, or the earlier invocation's for a repeat).
    #[serde(flatten)]
    pub record: nimbus_triggers::invoke::InvocationRecord,
    /// Whether this repeated an earlier request with the same idempotency key (and was not
    /// run again).
    pub deduplicated: bool,
}

/// `POST /v1/apps/{app}/queues/{queue}/messages`: the stored message's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentMessage {
    /// Message id (UUIDv7).
    pub id: String,
}

/// `GET /v1/apps/{app}/queues/{queue}/messages`: one message, not leased.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeekedMessage {
    /// Message id.
    pub id: String,
    /// The body as text, if it is UTF-8.
    pub body: Option<String>,
    /// The body, base64.
    pub body_base64: String,
    /// Attributes (content type, CloudEvents attributes as `ce-*`).
    pub attributes: Vec<(String, String)>,
    /// When it was sent, Unix milliseconds.
    pub sent_at_ms: u64,
    /// Deliveries so far.
    pub attempts: u32,
    /// Error of the last failed delivery.
    pub last_error: Option<String>,
    /// The queue it was dead-lettered from.
    pub dead_lettered_from: Option<String>,
}

/// `POST /v1/apps/{app}/queues/{queue}/redrive`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// Where to move the messages; default: the queue whose trigger dead-letters into this one.
    pub to: Option<String>,
    /// Most messages to move (default and maximum 10,000).
    pub limit: Option<usize>,
}

/// Result of a redrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedriveResponse {
    /// Messages moved.
    pub moved: u64,
    /// The queue they went to.
    pub to: String,
}

/// Every error response: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_manifest`, `route_conflict`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// The stored record of an app (state store, JSON). Versioned by `schema`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    /// Record schema version.
    pub schema: u32,
    /// Owning tenant (`default` until multi-tenancy).
    pub tenant: String,
    /// App name.
    pub name: String,
    /// The version taking traffic.
    pub active_version: u64,
    /// Every version, oldest first.
    pub versions: Vec<VersionRecord>,
}

/// One stored version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Version number.
    pub version: u64,
    /// Deploy time, seconds since the Unix epoch.
    pub created_at: u64,
    /// The manifest text as deployed.
    pub manifest: String,
    /// The validated, normalised app.
    pub app: nimbus_manifest::App,
    /// Function name → component digest.
    pub components: BTreeMap<String, String>,
}

impl AppRecord {
    /// The record of the active version.
    pub fn active(&self) -> Option<&VersionRecord> {
        self.versions
            .iter()
            .find(|v| v.version == self.active_version)
    }

    /// The API view of this record.
    pub fn status(&self) -> AppStatus {
        let functions = self
            .active()
            .map(|v| {
                v.app
                    .functions
                    .iter()
                    .map(|f| FunctionStatus {
                        name: f.name.clone(),
                        routes: f.routes.iter().map(ToString::to_string).collect(),
                        component: v.components.get(&f.name).cloned().unwrap_or_default(),
                        memory_mb: f.limits.memory_mb,
                        timeout_ms: f.limits.timeout_ms,
                        max_concurrency: f.limits.max_concurrency,
                        min_instances: f.limits.min_instances,
                        resident: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        AppStatus {
            name: self.name.clone(),
            active_version: self.active_version,
            versions: self
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    created_at: v.created_at,
                })
                .collect(),
            functions,
        }
    }
}
