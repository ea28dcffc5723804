//! The one accept loop that every Nimbus HTTP listener runs: the function gateway, the control
//! API and the S3 API each hand [`serve`] a bound listener, a [`ServeConfig`], a function that
//! makes a connection's service, and a shutdown future.
//!
//! What the loop guarantees, whatever the service:
//! - **No idle connection lives forever.** A connection with no request in progress is closed
//!   after `idle_timeout`; once a client has sent the first byte of a request head it has
//!   `header_read_timeout` to send the rest (slowloris). A client that leaves a response unread
//!   (its socket buffer full) for `idle_timeout` is cut off. A request being served — a
//!   function running, a `logs -f` or server-sent-events stream — is never cut by these.
//! - **No listener can starve the others.** Each listener holds at most `max_connections`
//!   open connections: past that it stops accepting (new clients wait in the kernel's backlog)
//!   instead of taking file descriptors the other listeners need. [`fit_connection_caps`]
//!   keeps the listeners' caps together inside the process's open-file limit.
//! - **No single client fills a listener** (optional): `max_connections_per_client` caps the
//!   connections from one address (an IPv6 client: its /64), except from the
//!   `trusted_proxies`, so a load balancer in front does not look like one abusive client.
//! - **Shutdown drains**: once `shutdown` resolves the listener closes and requests in flight
//!   get `drain_timeout` to finish.
//!
//! # Layout
//! - [`config`]: [`ServeConfig`], [`TrustedProxies`], the defaults.
//! - `guard`: the connection's stream wrapper that enforces the idle, header and write-stall
//!   timeouts.
//! - `track`: the service wrapper that tells the stream whether a request is in progress.
//! - `limit`: the per-client connection count.
//! - `fd`: the open-file limit, raised at start, and the caps fitted into it.
//! - `serve`: the loop itself.

mod config;
mod fd;
mod guard;
mod limit;
mod serve;
mod track;

pub use config::{ProxyListError, ServeConfig, TrustedProxies};
pub use fd::{fit_connection_caps, open_file_limit, raise_open_file_limit};
pub use guard::Guarded;
pub use serve::serve;
