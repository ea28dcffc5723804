//! The Nimbus engine: everything between a compiled WebAssembly component and one HTTP
//! invocation of it.
//!
//! A function version goes through three stages:
//!
//! 1. **Load** ([`Engine::load`]): the component's bytes are hashed and looked up in the
//!    on-disk [`ArtifactCache`]; only a miss compiles with Cranelift. The cache key is the
//!    component's SHA-256 plus a hash of every engine setting that affects code generation, so a
//!    restart or a redeploy of an unchanged component compiles nothing.
//! 2. **Prepare** ([`Engine::prepare`]): the component is type-checked against the host
//!    (`wasi:cli`, `wasi:http`, …) once, producing an `InstancePre`. A component that exports the
//!    wrong world or imports something the host lacks fails here, with the name in the error,
//!    before it can take traffic.
//! 3. **Invoke** ([`HttpFunction::handle`]): every request gets a fresh `Store` and instance
//!    (stateless by construction) from the pooling allocator, runs under its function's limits —
//!    linear-memory cap, CPU budget (epoch interruption), wall-clock timeout, outbound-host
//!    allow-list — and has its stdout/stderr tagged with the request id.
//!
//! # Layout
//!
//! - [`config`]: tunables of the engine (pool sizes, epoch tick, cache directory).
//! - [`engine`]: the wasmtime `Engine` + `Linker`, the epoch ticker, load and prepare.
//! - [`cache`]: the content-addressed, crash-safe compiled-artifact cache.
//! - [`spec`]: what every invocation shares — the function's [`FunctionSpec`] and the
//!   [`Invocation`] context.
//! - [`function`]: a prepared HTTP function version and one request to it.
//! - [`event`]: a prepared event-handler function version (`nimbus:events/handler`) and one
//!   event delivered to it.
//! - `fair`: fair CPU sharing between apps (per-app CPU slots taken at each epoch tick).
//! - `offload`: where guests run — on the runtime serving I/O until their first epoch tick,
//!   then on the engine's own runtime for CPU-bound work.
//! - [`residency`]: scale to zero — an idle function's code is released from memory by the
//!   reaper under its keep-alive policy and activated again by its next call; compiled
//!   components are shared by digest.
//! - `provisioned`: provisioned concurrency — the instances of a function with
//!   `min_instances` made ahead of their invocations and refilled in the background;
//!   `kept`: their billing, as provisioned time reported to the usage sink.
//! - `runtime`: what both share — capabilities resolved once, one `Store` per invocation.
//! - [`host`]: the per-invocation store data (WASI, wasi-http, limits).
//! - [`keyvalue`]: `wasi:keyvalue` for guests, on a [`nimbus_kv::KvBackend`], limited to the
//!   stores the function declares.
//! - [`blobstore`]: `wasi:blobstore` for guests, on a [`nimbus_objstore::ObjectStore`], limited
//!   to the buckets the function declares.
//! - [`queue`]: `nimbus:queue/sender` for guests, on a [`nimbus_queue::QueueBackend`], limited
//!   to the queues the function declares.
//! - [`services`]: the platform services the host interfaces are backed by.
//! - [`outbound`]: the `wasi:http/outgoing-handler` policy (allowed hosts).
//! - [`guest_log`]: capture of guest stdout/stderr into the platform log.
//! - `usage`: metering of one invocation (duration, CPU, peak memory, bytes, outcome) into a
//!   [`nimbus_metering::UsageRecord`], handed to the [`Services::usage`] sink as it ends.
//! - [`fair`]: fair sharing between apps — CPU slots, instance budgets, the governor that
//!   throttles an app over its share of a contended machine.
//! - [`error`]: the crate's error types.

pub mod blobstore;
pub mod cache;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod fair;
pub mod function;
pub mod guest_log;
pub mod host;
mod kept;
pub mod keyvalue;
mod offload;
pub mod outbound;
mod provisioned;
pub mod queue;
pub mod residency;
mod runtime;
pub mod services;
pub mod spec;
mod throttle;
mod usage;

pub use cache::ArtifactCache;
pub use config::EngineConfig;
pub use engine::{Engine, LoadedComponent};
pub use error::{EngineError, InvokeError};
pub use event::{Event, EventFunction};
pub use function::{HttpFunction, ResponseBody};
pub use nimbus_metering::{TriggerKind, UsageSink};
pub use services::Services;
pub use spec::{FunctionSpec, Invocation};
