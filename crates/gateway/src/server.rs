//! The accept loop: HTTP/1.1 with keep-alive, header limits and timeouts, graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::handler::{Routes, TurnedAway, handle};
use crate::pause::{Paused, Rejected};

/// The HTTP ingress. Routes are swapped atomically on deploy; requests in flight keep the
/// table (and function versions) they started with.
pub struct Gateway {
    routes: ArcSwap<Routes>,
    config: GatewayConfig,
}

impl Gateway {
    /// A gateway with no routes.
    pub fn new(config: GatewayConfig) -> Self {
        Self {
            routes: ArcSwap::from_pointee(Routes::default()),
            config,
        }
    }

    /// Replaces the whole route table at once.
    pub fn set_routes(&self, routes: Routes) {
        self.routes.store(Arc::new(routes));
    }

    /// The current route table.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Serves connections from `listener` until `shutdown` resolves, then stops accepting and
    /// waits (up to the drain timeout) for in-flight requests to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            // hyper's buffer bound is coarse (it can read past it); the handler checks the
            // exact header size and answers 431.
            .max_buf_size(self.config.max_header_bytes.max(8192) * 2)
            .max_headers(self.config.max_headers);
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // EMFILE and friends: log, back off briefly, keep serving.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Small responses should leave at once, not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            let rejected = Arc::new(Rejected::default());
            let stream = Paused::new(stream, rejected.clone(), self.config.rejection_pause);
            let service = hyper::service::service_fn(move |req| {
                let gateway = gateway.clone();
                let rejected = rejected.clone();
                async move {
                    let routes = gateway.routes();
                    let response = handle(routes, &gateway.config, req).await;
                    if response.extensions().get::<TurnedAway>().is_some() {
                        rejected.note();
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
            });
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("gateway drained"),
            () = tokio::time::sleep(self.config.drain_timeout) => {
                tracing::warn!("drain timeout passed with requests still in flight");
            }
        }
        Ok(())
    }
}
