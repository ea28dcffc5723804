//! The tracer: off, or exporting to an OTLP/HTTP collector.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

use crate::error::TraceError;
use crate::export::RuntimeClient;
use crate::span::{Parent, Span};

/// Where and how spans are exported.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector: a base URL (`http://localhost:4318`, to which `/v1/traces` is added, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is read) or the full traces URL (any other path).
    pub endpoint: String,
    /// Extra headers on every export (an API key, say).
    pub headers: Vec<(String, String)>,
    /// `service.name` of every span.
    pub service_name: String,
    /// Share of traces started here that are recorded, 0.0..=1.0; a caller's sampling
    /// decision (the `traceparent` flags) is always followed.
    pub sample_ratio: f64,
    /// How long finished spans may wait before they are sent.
    pub export_interval: Duration,
    /// Finished spans kept while the collector is slow or down; past this they are dropped
    /// (never blocking a request).
    pub max_queue: usize,
    /// Timeout of one export request.
    pub timeout: Duration,
}

impl OtlpConfig {
    /// Defaults for exporting to `endpoint`: every trace, sent within a second.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            service_name: "nimbus".to_owned(),
            sample_ratio: 1.0,
            export_interval: Duration::from_secs(1),
            max_queue: 8192,
            timeout: Duration::from_secs(10),
        }
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> Result<http::Uri, TraceError> {
        let uri: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| TraceError::Config(format!("endpoint {:?}: {e}", self.endpoint)))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(TraceError::Config(format!(
                    "endpoint {:?} must be an http:// or https:// URL",
                    self.endpoint
                )));
            }
        }
        if !matches!(uri.path(), "" | "/") {
            return Ok(uri);
        }
        let base = self.endpoint.trim_end_matches('/');
        format!("{base}/v1/traces")
            .parse()
            .map_err(|e| TraceError::Config(format!("endpoint {:?}: {e}", self.endpoint)))
    }
}

/// Makes spans, or nothing when tracing is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer(Option<Arc<Inner>>);

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() {
            "Tracer(on)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// No tracing: every span is a no-op.
    pub fn off() -> Self {
        Self(None)
    }

    /// Exports to an OTLP/HTTP collector. Must be called inside a Tokio runtime, which sends
    /// the exports.
    pub fn otlp(config: &OtlpConfig) -> Result<Self, TraceError> {
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            return Err(TraceError::Config(format!(
                "sample ratio {} is not within 0.0..=1.0",
                config.sample_ratio
            )));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| TraceError::Config("tracing needs a Tokio runtime".into()))?;
        let mut headers = HashMap::new();
        for (name, value) in &config.headers {
            http::HeaderName::try_from(name.as_str())
                .map_err(|e| TraceError::Config(format!("header name {name:?}: {e}")))?;
            http::HeaderValue::try_from(value.as_str())
                .map_err(|e| TraceError::Config(format!("value of header {name}: {e}")))?;
            headers.insert(name.clone(), value.clone());
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url()?.to_string())
            .with_timeout(config.timeout)
            .with_headers(headers)
            .with_http_client(RuntimeClient::new(runtime, config.timeout))
            .build()
            .map_err(|e| TraceError::Config(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(config.export_interval)
            .with_max_queue_size(config.max_queue)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Self::from_provider(provider))
    }

    /// Traces into `provider` (an embedder's own, or a test's in-memory exporter).
    pub fn from_provider(provider: SdkTracerProvider) -> Self {
        let scope = InstrumentationScope::builder("nimbus")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Self(Some(Arc::new(Inner { provider, tracer })))
    }

    /// Whether spans are recorded at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Starts a span under `parent` (a root span when it has none). Ends when dropped.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Parent,
        attributes: Vec<KeyValue>,
    ) -> Span {
        match &self.0 {
            None => Span::none(),
            Some(inner) => Span::start(&inner.tracer, name.into(), kind, parent, attributes),
        }
    }

    /// Sends every finished span and stops exporting; spans started later are dropped.
    pub async fn shutdown(&self) -> Result<(), TraceError> {
        let Some(inner) = self.0.clone() else {
            return Ok(());
        };
        // The SDK's shutdown blocks until its exporter thread is done, and that thread's
        // exports run on this runtime: block elsewhere.
        tokio::task::spawn_blocking(move || inner.provider.shutdown())
            .await
            .map_err(|e| TraceError::Flush(e.to_string()))?
            .map_err(|e| TraceError::Flush(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_endpoints_get_the_traces_path() {
        let url = |e: &str| OtlpConfig::new(e).traces_url().map(|u| u.to_string());
        assert_eq!(
            url("http://localhost:4318").unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            url("http://localhost:4318/").unwrap(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            url("https://otel.example.com/custom/path").unwrap(),
            "https://otel.example.com/custom/path"
        );
        assert!(url("localhost:4318").is_err());
        assert!(url("ftp://x").is_err());
    }

    #[tokio::test]
    async fn bad_ratio_and_headers_are_refused() {
        let mut config = OtlpConfig::new("http://127.0.0.1:1");
        config.sample_ratio = 1.5;
        assert!(matches!(Tracer::otlp(&config), Err(TraceError::Config(_))));
        config.sample_ratio = 1.0;
        config.headers = vec![("bad header".into(), "v".into())];
        assert!(matches!(Tracer::otlp(&config), Err(TraceError::Config(_))));
        config.headers = vec![("x-api-key".into(), "k".into())];
        let tracer = Tracer::otlp(&config).unwrap();
        assert!(tracer.is_on());
        tracer.shutdown().await.unwrap();
    }

    #[test]
    fn off_makes_no_op_spans() {
        let tracer = Tracer::off();
        let span = tracer.start("x", SpanKind::Server, &Parent::default(), Vec::new());
        assert!(!span.is_recording());
        assert!(span.parent().trace_id().is_none());
    }
}
