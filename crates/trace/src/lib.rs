//! Distributed tracing for Nimbus: OpenTelemetry spans for the gateway, every invocation and
//! the calls a function makes (outbound HTTP, key-value, objects, queues), with the W3C
//! `traceparent` header read from callers, handed into functions and put on their outbound
//! requests; exported over OTLP/HTTP (protobuf) to any collector. Off by default.
//!
//! When tracing is off a [`Tracer`] is `None` inside and every span is a no-op that allocates
//! nothing, so the request path pays one branch per would-be span.
//!
//! A span is handed down explicitly where the code that makes the child knows its parent (the
//! gateway hands its server span's [`Parent`] to the invocation). Calls from deep inside a
//! guest's run (the key-value and object wrappers every backend call goes through) find their
//! parent in a task-local scope the engine sets around the guest ([`in_scope`],
//! [`current_child`]), so the storage layers need no tracing parameter.
//!
//! # Layout
//!
//! - [`tracer`]: the tracer (on or off), its OTLP configuration, shutdown with flush.
//! - [`span`]: spans, parents, W3C trace-context headers, the task-local scope.
//! - `export`: the HTTP client the OTLP exporter sends with.
//! - [`error`]: the crate's error type.

pub mod error;
mod export;
pub mod span;
pub mod tracer;

pub use error::TraceError;
pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind;
pub use span::{Parent, Span, current_child, in_scope, propagate};
pub use tracer::{OtlpConfig, Tracer};
