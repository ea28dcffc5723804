//! The gateway's listener: the shared accept loop (`nimbus_serve`) with the gateway's header
//! limits and its pause after a 429 on each connection.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::handler::{Routes, TurnedAway, default_host, handle};
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

    /// Serves connections from `listener` under the listener settings `serve` until
    /// `shutdown` resolves, then stops accepting and waits (up to the drain timeout) for
    /// in-flight requests to finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut serve: nimbus_serve::ServeConfig,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        // hyper's buffer bound is coarse (it can read past it); the handler checks the exact
        // header size and answers 431.
        serve.max_buf_size = Some(self.config.max_header_bytes.max(8192) * 2);
        serve.max_headers = Some(self.config.max_headers);
        let pause = self.config.rejection_pause;
        let connection = move |stream: nimbus_serve::Guarded<tokio::net::TcpStream>, _peer| {
            let local = stream.get_ref().local_addr().ok();
            let gateway = self.clone();
            let rejected = Arc::new(Rejected::default());
            let stream = Paused::new(stream, rejected.clone(), pause);
            let service = hyper::service::service_fn(move |mut req| {
                if let Some(local) = local {
                    default_host(&mut req, local);
                }
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
            (stream, service)
        };
        nimbus_serve::serve("gateway", listener, &serve, connection, shutdown).await
    }
}
