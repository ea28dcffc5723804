//! The accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ServeConfig;
use crate::guard::{ConnState, Guarded};
use crate::limit::Clients;
use crate::track::Tracked;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a client over its connection cap reads before the connection closes.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 44\r\n\r\ntoo many open connections from your address\n";

/// Warnings about a full listener or refused clients are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 (keep-alive) on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to `config.drain_timeout` for requests in flight.
///
/// `connection` makes each accepted connection's stream and service: it receives the stream
/// already under the listener's timeouts ([`Guarded`]) and the peer's address, and may wrap
/// the stream further. `name` names the listener in logs.
pub async fn serve<F, Io, S, B>(
    name: &'static str,
    listener: TcpListener,
    config: &ServeConfig,
    mut connection: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: FnMut(Guarded<TcpStream>, SocketAddr) -> (Io, S),
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // hyper's header_read_timeout would also bound idle keep-alive time; `Guarded` keeps the
    // two clocks apart instead.
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    if let Some(bytes) = config.max_buf_size {
        builder.max_buf_size(bytes);
    }
    if let Some(n) = config.max_headers {
        builder.max_headers(n);
    }
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let clients = Clients::new(
        config.max_connections_per_client,
        config.trusted_proxies.clone(),
    );
    let mut full_warned: Option<Instant> = None;
    let mut refused_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if due(&mut full_warned) {
                    tracing::warn!(
                        listener = name,
                        max_connections = config.max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends: log, back off briefly, keep serving.
                    tracing::warn!(listener = name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client) = clients.admit(peer.ip()) else {
            if due(&mut refused_warned) {
                tracing::warn!(
                    listener = name,
                    client = %peer.ip(),
                    max_connections_per_client = ?config.max_connections_per_client,
                    "client over its connection cap: connection refused"
                );
            }
            // Best effort: the socket is new, so its send buffer takes this at once.
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        // Small responses should leave at once, not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let stream = Guarded::new(
            stream,
            state.clone(),
            config.header_read_timeout,
            config.idle_timeout,
        );
        let (io, service) = connection(stream, peer);
        let conn = builder.serve_connection(TokioIo::new(io), Tracked::new(service, state));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(listener = name, error = %err, "connection ended with an error");
            }
            drop((permit, client));
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(listener = name, "drain timeout passed with requests still in flight");
        }
    }
    Ok(())
}

/// Whether a rate-limited warning may be logged now.
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    match last {
        Some(at) if now.duration_since(*at) < WARN_EVERY => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}
