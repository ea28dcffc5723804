//! The Nimbus control plane: what is deployed, which version is live, and the API to change
//! it.
//!
//! # Layout
//!
//! - [`platform`]: deploy, rollback, delete and restore — the atomic switch between versions.
//! - [`store`]: durable state (redb) keyed by tenant and app.
//! - [`blobs`]: content-addressed, crash-safe storage of uploaded components.
//! - [`token`]: the API token (stored hashed).
//! - [`api`]: the REST API (`/v1`, see `docs/openapi.yaml`).
//! - `keys_api`: its `/v1/keys` part (S3 access keys).
//! - `kv_api`: its `/v1/kv` part, over a [`nimbus_kv::KvBackend`].
//! - `invoke_api`: its asynchronous-invocation part.
//! - `queue_api`: its `/v1/apps/{app}/queues` part (send, peek, stats, redrive).
//! - `secrets_api`: its `/v1/apps/{app}/secrets` part (write-only values).
//! - [`logs_api`]: its `/v1/logs` part (stored function logs, and following them live).
//! - [`usage_api`]: its `/v1/usage` part (usage reports and records, from `nimbus-metering`).
//! - [`types`]: wire and stored types, shared with the CLI.
//! - [`error`]: errors with their HTTP status.

pub mod api;
pub mod blobs;
pub mod error;
mod invoke_api;
mod keys_api;
mod kv_api;
pub mod logs_api;
pub mod platform;
mod queue_api;
mod secrets_api;
pub mod store;
pub mod token;
pub mod types;
pub mod usage_api;

pub use error::ControlError;
pub use platform::Platform;
pub use store::StateStore;
