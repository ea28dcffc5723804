//! The HTTP client the OTLP exporter sends with.
//!
//! The SDK's batch processor exports from a thread of its own, outside the Tokio runtime, and
//! hyper's client needs the runtime's reactor: each export is therefore spawned onto the
//! runtime the tracer was built in, and its result awaited from the exporter's thread (a
//! `JoinHandle` can be awaited from any executor).

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;

/// Sends on a Tokio runtime, from any thread.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeClient {
    runtime: Handle,
    client: Arc<HyperClient>,
}

impl RuntimeClient {
    pub(crate) fn new(runtime: Handle, timeout: std::time::Duration) -> Self {
        Self {
            runtime,
            client: Arc::new(HyperClient::with_default_connector(timeout, None)),
        }
    }
}

#[async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
