//! The `wasi:http/outgoing-handler` policy: a function may call only the hosts listed in its
//! manifest's `allowed_outbound_hosts`.
//!
//! The check runs in [`WasiHttpHooks::send_request`], after wasi-http has assembled the request
//! and before any connection is made (no DNS lookup either), so a denied request costs nothing
//! and the guest receives the standard `HTTP-request-denied` error code it can report.

use std::sync::Arc;

use nimbus_manifest::OutboundHost;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Outbound policy of one invocation.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    allowed: Arc<[OutboundHost]>,
    request_id: Arc<str>,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed`, logging under `request_id`.
    pub fn new(allowed: Arc<[OutboundHost]>, request_id: Arc<str>) -> Self {
        Self {
            allowed,
            request_id,
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
        request: http::Request<WasiBody>,
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
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> OutboundPolicy {
        let allowed: Vec<OutboundHost> = hosts
            .iter()
            .map(|h| OutboundHost::parse(h).unwrap())
            .collect();
        OutboundPolicy::new(allowed.into(), "r".into())
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
