//! One request through the gateway: id, route, limits, invoke, map errors to statuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use nimbus_engine::{HttpFunction, Invocation, InvokeError, TriggerKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use nimbus_trace::{KeyValue, Parent, Span, SpanKind, Tracer};

use crate::GatewayConfig;
use crate::body::{GatewayBody, LimitedBody, PermitBody, full};
use crate::routes::RouteTable;

/// The header carrying the request id on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// A deployed function as the gateway sees it.
pub struct Target {
    /// The app it belongs to.
    pub app: String,
    /// The function.
    pub function: HttpFunction,
    /// Limits concurrent invocations to the function's `max_concurrency`.
    pub concurrency: Arc<Semaphore>,
    /// Requests waiting for a permit, at most the function's `max_waiting`.
    waiting: AtomicU32,
}

impl Target {
    /// A target with a fresh concurrency limiter sized from the function's limits.
    pub fn new(app: String, function: HttpFunction) -> Self {
        let permits = function.spec().limits.max_concurrency as usize;
        Self {
            app,
            function,
            concurrency: Arc::new(Semaphore::new(permits)),
            waiting: AtomicU32::new(0),
        }
    }

    /// A concurrency permit: at once if one is free; else, if fewer than `max_waiting`
    /// requests are waiting, after waiting (first come, first served) up to `max_wait_ms`;
    /// else `None` at once.
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.concurrency.clone().try_acquire_owned() {
            return Some(permit);
        }
        let limits = self.function.spec().limits;
        let waiting = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits.max_waiting).then_some(n + 1)
            });
        if waiting.is_err() {
            return None;
        }
        let wait = Duration::from_millis(limits.max_wait_ms);
        let permit = tokio::time::timeout(wait, self.concurrency.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.ok().and_then(Result::ok)
    }
}

/// The live routing state the gateway serves from.
pub type Routes = RouteTable<Arc<Target>>;

/// Handles one request end to end. Never fails: every outcome is a response.
///
/// With tracing on, the request gets a server span (under the caller's `traceparent`) that
/// lasts until the response head is ready; the invocation's span hangs under it.
pub async fn handle<B>(
    routes: Arc<Routes>,
    config: &GatewayConfig,
    req: Request<B>,
) -> Response<PermitBody>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let max_header_bytes = config.max_header_bytes;
    let request_id: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut span = server_span(&config.tracer, &req, &request_id);

    let (response, target) = if head_size(&req) > max_header_bytes {
        let msg = format!("request headers exceed {max_header_bytes} bytes");
        (
            error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &msg,
                &request_id,
            ),
            None,
        )
    } else {
        dispatch(&routes, req, &request_id, span.parent()).await
    };
    let mut response = response;
    span.record_http_status(response.status().as_u16());
    if let Some(function) = target.as_ref().filter(|_| span.is_recording()) {
        span.set_attribute(KeyValue::new("nimbus.function", function.clone()));
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        target: "nimbus::access",
        request_id = %request_id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        function = target.as_deref().unwrap_or("-"),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// The server span of one request (OpenTelemetry's HTTP server conventions).
fn server_span<B>(tracer: &Tracer, req: &Request<B>, request_id: &Arc<str>) -> Span {
    if !tracer.is_on() {
        return Span::none();
    }
    let method = req.method().as_str().to_owned();
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("url.path", req.uri().path().to_owned()),
        KeyValue::new("nimbus.request_id", request_id.clone()),
    ];
    if let Some(host) = request_host(req) {
        attributes.push(KeyValue::new("server.address", host));
    }
    let parent = Parent::from_headers(req.headers());
    tracer.start(method, SpanKind::Server, &parent, attributes)
}

async fn dispatch<B>(
    routes: &Routes,
    req: Request<B>,
    request_id: &Arc<str>,
    parent: Parent,
) -> (Response<PermitBody>, Option<String>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let Some(host) = request_host(&req) else {
        // HTTP/1.1 without Host (HTTP/1.0 requests got one in `default_host`).
        let msg = "request has no Host header";
        return (error(StatusCode::BAD_REQUEST, msg, request_id), None);
    };
    let host = Some(host);
    let Some(target) = routes.lookup(host.as_deref(), req.uri().path()) else {
        let msg = format!("no route for {}", req.uri().path());
        return (error(StatusCode::NOT_FOUND, &msg, request_id), None);
    };
    let name = format!("{}/{}", target.app, target.function.spec().function);
    let limits = target.function.spec().limits;

    if let Some(len) = content_length(&req)
        && len > limits.max_body_bytes
    {
        let msg = format!(
            "request body of {len} bytes exceeds the limit of {} bytes",
            limits.max_body_bytes
        );
        return (
            error(StatusCode::PAYLOAD_TOO_LARGE, &msg, request_id),
            Some(name),
        );
    }

    let Some(permit) = target.admit().await else {
        // Metered (as rejected, never billed) like every request that reached a function.
        target
            .function
            .record_rejection(&Invocation::new(request_id.clone(), TriggerKind::Http));
        let msg = "function is at its max_concurrency and its wait queue is full; retry later";
        return (too_many(msg, request_id), Some(name));
    };

    let exceeded = Arc::new(AtomicBool::new(false));
    let req = req.map(|b| LimitedBody::new(b, limits.max_body_bytes, exceeded.clone()));
    let invocation = Invocation::new(request_id.clone(), TriggerKind::Http).with_parent(parent);
    let result = target.function.handle(req, invocation).await;
    if exceeded.load(Ordering::Relaxed) {
        let msg = format!(
            "request body exceeds the limit of {} bytes",
            limits.max_body_bytes
        );
        return (
            error(StatusCode::PAYLOAD_TOO_LARGE, &msg, request_id),
            Some(name),
        );
    }
    let response = match result {
        Ok(response) => response.map(|body| {
            PermitBody::new(body, Some(permit))
                .abort_when(exceeded)
                .limit_response(limits.max_response_bytes)
        }),
        Err(err) => {
            let (status, msg) = match &err {
                InvokeError::Timeout(_) | InvokeError::CpuBudget(_) => {
                    (StatusCode::GATEWAY_TIMEOUT, err.to_string())
                }
                InvokeError::Instantiate(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "function could not be started".to_owned(),
                ),
                // Traps and guest errors can carry guest internals: the client gets only the
                // kind and the request id to look the details up in the log.
                InvokeError::Trap(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "function trapped".to_owned(),
                ),
                InvokeError::NoResponse | InvokeError::GuestError(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "function failed to produce a response".to_owned(),
                ),
                InvokeError::AppAtCapacity(_) => {
                    return (
                        too_many(&format!("{err}; retry later"), request_id),
                        Some(name),
                    );
                }
            };
            error(status, &msg, request_id)
        }
    };
    (response, Some(name))
}

/// Marks a response by which the gateway turned a request away (not a function's own 429): its
/// connection pauses before its next request is read (see `pause`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnedAway;

/// 429 with `Retry-After: 1`.
fn too_many(msg: &str, request_id: &str) -> Response<PermitBody> {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, msg, request_id);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp.extensions_mut().insert(TurnedAway);
    resp
}

/// Host became mandatory in HTTP/1.1; an HTTP/1.0 request without it is for this server.
/// It gets the listener's own address as its Host, so it reaches the routes that name no
/// host and the guest sees an authority (wasi-http needs one).
pub(crate) fn default_host<B>(req: &mut Request<B>, local: std::net::SocketAddr) {
    if req.version() == http::Version::HTTP_10
        && req.uri().host().is_none()
        && !req.headers().contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(&local.to_string())
    {
        req.headers_mut().insert(header::HOST, value);
    }
}

/// The Host header (or URI authority) without the port. Route hosts are DNS names, so an
/// IPv6 literal is returned as is (and matches only host-less routes).
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().host() {
        Some(host) => host,
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if !raw.starts_with('[') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    Some(host.to_owned())
}

/// Bytes of the request line and headers, as received (approximately: separators counted).
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + uri
        + 16
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A plain-text error response naming the request id; never includes guest internals.
pub(crate) fn error(status: StatusCode, message: &str, request_id: &str) -> Response<PermitBody> {
    let body: GatewayBody = full(format!("{message} (request id {request_id})\n"));
    let mut resp = Response::new(PermitBody::new(body, None));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_comes_from_uri_or_header_without_port() {
        assert_eq!(
            request_host(&req("/x", Some("a.example.com:8080"))).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            request_host(&req("/x", Some("a.example.com"))).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            request_host(&req("http://b.example.com/x", Some("a"))).as_deref(),
            Some("b.example.com")
        );
        assert_eq!(
            request_host(&req("/x", Some("[::1]:80"))).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(request_host(&req("/x", None)), None);
    }

    #[test]
    fn head_size_counts_headers_and_uri() {
        let small = head_size(&req("/x", Some("h")));
        let mut big = req("/x", Some("h"));
        big.headers_mut()
            .insert("x-big", HeaderValue::from_str(&"a".repeat(1000)).unwrap());
        assert!(head_size(&big) >= small + 1000);
    }
}
