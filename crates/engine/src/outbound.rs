//! The `wasi:http/outgoing-handler` policy of one invocation: a function may call only the
//! hosts listed in its manifest's `allowed_outbound_hosts`, make at most
//! `max_outbound_requests` requests, and hold at most `max_outbound_connections` open at once.
//!
//! The checks run in [`WasiHttpHooks::send_request`], after wasi-http has assembled the request
//! and before any connection is made (no DNS lookup either), so a denied request costs nothing
//! and the guest receives a standard error code it can report: `HTTP-request-denied` for a host
//! not allowed, `connection-limit-reached` past the request count. A request past the open
//! connection bound waits for a connection to close (as Cloudflare Workers queue subrequests
//! past six), which the function's timeout bounds; wasi-http opens one connection per request,
//! so the bound holds for sockets, and a guest that fires thousands of requests at once holds
//! no more than that many.

use std::sync::Arc;

use nimbus_manifest::OutboundHost;
use nimbus_trace::span::TRACEPARENT;
use nimbus_trace::{KeyValue, Span, SpanKind, Tracer};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How many outbound requests one invocation may make, and how many at once.
#[derive(Debug, Clone, Copy)]
pub struct OutboundLimits {
    /// Requests in all.
    pub max_requests: u32,
    /// Connections open at once.
    pub max_connections: u32,
}

/// Outbound policy of one invocation.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    allowed: Arc<[OutboundHost]>,
    request_id: Arc<str>,
    /// Requests still allowed.
    remaining: u32,
    limit_logged: bool,
    connections: Arc<Semaphore>,
    tracer: Tracer,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed` within `limits`, logging under `request_id` and
    /// tracing each request that goes out with `tracer`.
    pub fn new(
        allowed: Arc<[OutboundHost]>,
        limits: OutboundLimits,
        request_id: Arc<str>,
        tracer: Tracer,
    ) -> Self {
        Self {
            allowed,
            request_id,
            remaining: limits.max_requests,
            limit_logged: false,
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1) as usize)),
            tracer,
        }
    }

    /// Whether a request to `uri` is allowed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = match (uri.port_u16(), scheme) {
            (Some(port), _) => port,
            (None, "http") => 80,
            (None, "https") => 443,
            (None, _) => return false,
        };
        // `Uri::host` keeps IPv6 brackets; manifests may be written either way.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed.iter().any(|a| a.allows(scheme, host, port))
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        _ = fut;
        if !self.allows(request.uri()) {
            tracing::warn!(
                request_id = %self.request_id,
                uri = %request.uri(),
                "outbound request denied: host not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let Some(remaining) = self.remaining.checked_sub(1) else {
            if !self.limit_logged {
                // Once per invocation: a guest looping on a refused request must not flood
                // the log.
                self.limit_logged = true;
                tracing::warn!(
                    request_id = %self.request_id,
                    "outbound request refused: the invocation reached max_outbound_requests"
                );
            }
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        };
        self.remaining = remaining;
        let connections = self.connections.clone();
        let mut span = client_span(&self.tracer, &request);
        // The callee continues the trace under this request's span, unless the guest set its
        // own `traceparent` (it runs a tracer of its own).
        if !request.headers().contains_key(TRACEPARENT) {
            span.parent().inject(request.headers_mut());
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            // Held until the connection's I/O future ends (the response body was read or
            // dropped), so it bounds open sockets, not just requests being sent.
            let permit = connections
                .acquire_owned()
                .await
                .map_err(|_| HttpError::InternalError(Some("connection limiter closed".into())))?;
            let sent = wasmtime_wasi_http::default_send_request(request, options).await;
            let (res, io) = match sent {
                Ok(sent) => sent,
                Err(e) => {
                    span.set_error(format!("{e:?}"));
                    return Err(e);
                }
            };
            span.record_http_status(res.status().as_u16());
            // The span, like the permit, lasts until the response body was read or dropped.
            let io = async move {
                let result = io.await;
                drop(permit);
                drop(span);
                result
            };
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The client span of one outbound request (OpenTelemetry's HTTP client conventions), under
/// the invocation's span.
fn client_span(tracer: &Tracer, request: &http::Request<WasiBody>) -> Span {
    if !tracer.is_on() {
        return Span::none();
    }
    let uri = request.uri();
    let method = request.method().as_str().to_owned();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("server.address", uri.host().unwrap_or_default().to_owned()),
        // The query is left out: it often carries tokens.
        KeyValue::new(
            "url.full",
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            ),
        ),
    ];
    if let Some(port) = uri.port_u16() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    nimbus_trace::current_child(tracer, method, SpanKind::Client, attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> OutboundPolicy {
        let allowed: Vec<OutboundHost> = hosts
            .iter()
            .map(|h| OutboundHost::parse(h).unwrap())
            .collect();
        let limits = OutboundLimits {
            max_requests: 10,
            max_connections: 2,
        };
        OutboundPolicy::new(allowed.into(), limits, "r".into(), Tracer::off())
    }

    #[test]
    fn default_ports_and_schemes() {
        let p = policy(&["https://api.example.com", "http://127.0.0.1:*"]);
        assert!(p.allows(&"https://api.example.com/x".parse().unwrap()));
        assert!(!p.allows(&"http://api.example.com/x".parse().unwrap()));
        assert!(!p.allows(&"https://api.example.com:8443/x".parse().unwrap()));
        assert!(p.allows(&"http://127.0.0.1:9999/".parse().unwrap()));
        assert!(!p.allows(&"http://127.0.0.2:9999/".parse().unwrap()));
    }

    #[test]
    fn nothing_allowed_by_default() {
        let p = policy(&[]);
        assert!(!p.allows(&"http://127.0.0.1/".parse().unwrap()));
    }
}
