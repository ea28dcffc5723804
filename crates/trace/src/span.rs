//! Spans, their parents, the W3C trace-context headers and the task-local scope.

use std::borrow::Cow;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

/// The W3C trace-context header naming the caller's span.
pub const TRACEPARENT: &str = "traceparent";

/// The span a new span hangs under: a remote caller's (read from `traceparent`) or one of
/// ours. Empty: the new span starts a trace.
#[derive(Clone, Debug, Default)]
pub struct Parent(Option<SpanContext>);

impl Parent {
    /// The caller's span from W3C `traceparent`/`tracestate` headers; empty when they are
    /// missing or malformed (a malformed header is ignored, as the W3C spec asks).
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        if !headers.contains_key(TRACEPARENT) {
            return Self::default();
        }
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let span = cx.span().span_context().clone();
        Self(span.is_valid().then_some(span))
    }

    /// The same, from one header value (as a queue message attribute carries it).
    pub fn from_traceparent(value: &str) -> Self {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(TRACEPARENT, value);
        }
        Self::from_headers(&headers)
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.trace_id().to_string())
    }

    /// The parent's span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.span_id().to_string())
    }

    /// Writes `traceparent` (and `tracestate`, if any) naming this span into `headers`,
    /// replacing what was there.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        if let Some(span) = &self.0 {
            let cx = Context::new().with_remote_span_context(span.clone());
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
        }
    }

    /// The `traceparent` value naming this span.
    pub fn traceparent(&self) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        self.inject(&mut headers);
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn context(&self) -> Context {
        match &self.0 {
            Some(span) => Context::new().with_remote_span_context(span.clone()),
            None => Context::new(),
        }
    }
}

/// One span, ended (and queued for export) when dropped. A no-op when tracing is off.
pub struct Span(Option<Live>);

struct Live {
    span: opentelemetry_sdk::trace::Span,
    tracer: SdkTracer,
}

impl Span {
    /// A span that records nothing.
    pub fn none() -> Self {
        Self(None)
    }

    pub(crate) fn start(
        tracer: &SdkTracer,
        name: Cow<'static, str>,
        kind: SpanKind,
        parent: &Parent,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent.context());
        Self(Some(Live {
            span,
            tracer: tracer.clone(),
        }))
    }

    /// Whether this span will be exported (tracing is on and the trace is sampled).
    pub fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|l| l.span.is_recording())
    }

    /// This span as the parent of others (and of a `traceparent` header).
    pub fn parent(&self) -> Parent {
        Parent(self.0.as_ref().map(|l| l.span.span_context().clone()))
    }

    /// Starts a span under this one.
    pub fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> Span {
        match &self.0 {
            None => Span::none(),
            Some(live) => Span::start(&live.tracer, name.into(), kind, &self.parent(), attributes),
        }
    }

    /// Adds an attribute.
    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(live) = &mut self.0 {
            live.span.set_attribute(attribute);
        }
    }

    /// Marks the span failed, with a description.
    pub fn set_error(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(live) = &mut self.0 {
            live.span.set_status(Status::error(description));
        }
    }

    /// Records an HTTP response status (`http.response.status_code`); a 5xx marks the span
    /// failed.
    pub fn record_http_status(&mut self, status: u16) {
        if self.0.is_none() {
            return;
        }
        self.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            self.set_error(format!("status {status}"));
        }
    }

    /// Marks the span failed or not by `result` (the error's text as the description).
    pub fn record_result<T, E: std::fmt::Display>(&mut self, result: &Result<T, E>) {
        if let (Some(_), Err(e)) = (&self.0, result) {
            self.set_error(e.to_string());
        }
    }
}

tokio::task_local! {
    static CURRENT: Parent;
}

/// Runs `fut` with `span` as the parent [`current_child`] finds (the engine wraps a guest's
/// run in it). Without tracing, just runs `fut`.
pub async fn in_scope<F: Future>(span: &Span, fut: F) -> F::Output {
    if span.0.is_none() {
        return fut.await;
    }
    CURRENT.scope(span.parent(), fut).await
}

/// Wraps `fut` so that it runs in the current scope (if any) wherever it is polled: for work a
/// guest's call spawns onto another task (a streamed object write), which would otherwise run
/// outside the invocation's scope and make no spans.
pub fn propagate<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let parent = CURRENT.try_with(Parent::clone).ok();
    async move {
        match parent {
            Some(parent) => CURRENT.scope(parent, fut).await,
            None => fut.await,
        }
    }
}

/// A span under the current scope's span (see [`in_scope`]); a no-op outside any scope, so a
/// storage call from the control API, say, makes no span.
pub fn current_child(
    tracer: &crate::Tracer,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
) -> Span {
    if !tracer.is_on() {
        return Span::none();
    }
    CURRENT
        .try_with(|parent| tracer.start(name, kind, parent, attributes))
        .unwrap_or_else(|_| Span::none())
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;
    use crate::Tracer;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn tracer() -> (Tracer, InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        (Tracer::from_provider(provider.clone()), exporter, provider)
    }

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let parent = Parent::from_traceparent(CALLER);
        assert_eq!(
            parent.trace_id().as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(parent.span_id().as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(parent.traceparent().as_deref(), Some(CALLER));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(Parent::from_traceparent(bad).trace_id().is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn children_share_the_trace_and_point_at_their_parent() {
        let (tracer, exporter, provider) = tracer();
        let caller = Parent::from_traceparent(CALLER);
        let server = tracer.start("server", SpanKind::Server, &caller, Vec::new());
        let mut client = server.child("client", SpanKind::Client, Vec::new());
        client.set_error("boom");
        let header = client.parent().traceparent().unwrap();
        assert!(header.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!header.contains("00f067aa0ba902b7"));
        drop(client);
        let scoped = in_scope(&server, async {
            current_child(&tracer, "kv get", SpanKind::Client, Vec::new())
                .parent()
                .span_id()
        })
        .await;
        assert!(scoped.is_some());
        let outside = current_child(&tracer, "kv get", SpanKind::Client, Vec::new());
        assert!(outside.parent().span_id().is_none(), "no scope, no span");
        let spawned = in_scope(&server, async {
            let tracer = tracer.clone();
            tokio::spawn(propagate(async move {
                current_child(&tracer, "put", SpanKind::Client, Vec::new())
                    .parent()
                    .span_id()
            }))
            .await
            .unwrap()
        })
        .await;
        assert!(spawned.is_some(), "a spawned task keeps the scope");
        drop(server);
        provider.force_flush().unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        let (server, client, kv) = (by_name("server"), by_name("client"), by_name("kv get"));
        assert_eq!(spans.len(), 4);
        assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(client.parent_span_id, server.span_context.span_id());
        assert_eq!(kv.parent_span_id, server.span_context.span_id());
        assert_eq!(kv.span_context.span_id().to_string(), scoped.unwrap());
        assert!(matches!(client.status, Status::Error { .. }));
        for span in &spans {
            assert_eq!(
                span.span_context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
    }

    #[test]
    fn an_unsampled_caller_is_followed() {
        let (tracer, exporter, provider) = tracer();
        let caller =
            Parent::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let span = tracer.start("server", SpanKind::Server, &caller, Vec::new());
        assert!(!span.is_recording());
        // Still propagated, so the callee sees the same trace, unsampled.
        assert!(span.parent().traceparent().unwrap().ends_with("-00"));
        drop(span);
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }
}
