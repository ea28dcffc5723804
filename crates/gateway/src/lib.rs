//! The HTTP ingress of Nimbus: accepts connections, gives each request an id, routes it to a
//! function by host and path, applies the function's limits and maps every failure to a clear
//! status — and drains in-flight requests on shutdown.
//!
//! # Layout
//!
//! - [`routes`]: the route table — pure matching and conflict detection.
//! - [`handler`]: one request: id, route, body limit, concurrency limit, invoke, error mapping.
//! - [`body`]: request-body limit and the response body holding the concurrency permit.
//! - `pause`: a connection turned away (429) waits a moment before its next request is read.
//! - [`server`]: the accept loop (bound listener in, shutdown future in).
//! - [`config`]: limits and timeouts.
//!
//! Status codes the gateway itself produces: 400 (no Host header), 404 (no route), 413 (body over `max_body_bytes`),
//! 429 (function at `max_concurrency`, or its app at its instance budget, with `Retry-After`;
//! the connection's next request is read only after `rejection_pause`), 431 (headers too large, from hyper),
//! 500 (trap or no response), 503 (instance could not be created), 504 (timeout or CPU budget).
//! Every response carries `x-request-id`.

pub mod body;
pub mod config;
pub mod handler;
mod pause;
pub mod routes;
pub mod server;

pub use config::GatewayConfig;
pub use handler::{REQUEST_ID, Routes, Target};
pub use routes::{RouteConflict, RouteOwner, RouteTable};
pub use server::Gateway;
