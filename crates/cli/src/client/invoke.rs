//! The asynchronous-invocation part of the API client.

use nimbus_control::types::InvocationAccepted;
use nimbus_triggers::invoke::InvocationRecord;
use reqwest::Method;

use super::{ApiClient, segment};

/// What `invoke_async` sends besides the payload.
#[derive(Debug, Default)]
pub struct AsyncOptions<'a> {
    /// Media type of the payload.
    pub content_type: Option<&'a str>,
    /// HTTP method (HTTP functions).
    pub method: Option<&'a str>,
    /// HTTP path (HTTP functions).
    pub path: Option<&'a str>,
    /// Dedupes repeats.
    pub idempotency_key: Option<&'a str>,
}

impl ApiClient {
    /// `POST /v1/apps/{app}/functions/{function}/invocations`.
    pub async fn invoke_async(
        &self,
        app: &str,
        function: &str,
        body: Vec<u8>,
        options: AsyncOptions<'_>,
    ) -> anyhow::Result<InvocationAccepted> {
        let url = format!(
            "/v1/apps/{}/functions/{}/invocations",
            segment(app)?,
            segment(function)?
        );
        let mut builder = self.request(Method::POST, &url).body(body);
        if let Some(ct) = options.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(key) = options.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let mut query = Vec::new();
        if let Some(m) = options.method {
            query.push(("method", m));
        }
        if let Some(p) = options.path {
            query.push(("path", p));
        }
        self.json(builder.query(&query)).await
    }

    /// `GET /v1/invocations/{id}`.
    pub async fn invocation(&self, id: &str) -> anyhow::Result<InvocationRecord> {
        let path = format!("/v1/invocations/{}", segment(id)?);
        self.json(self.request(Method::GET, &path)).await
    }
}
