//! Parsing, validation and normalisation of `nimbus.toml`, the manifest of a Nimbus app.
//!
//! [`parse`] turns the text of a manifest into an [`App`]: a typed, fully validated description
//! of the app's functions, with every default filled in, routes parsed into [`Route`]s and
//! outbound-host rules into [`OutboundHost`]s. Anything wrong is reported as one
//! [`ManifestError`] pointing at the line and column of the offending value, e.g.
//!
//! ```text
//! nimbus.toml:12:5: function "api": memory_mb: must be between 1 and 4096 (got 0)
//! ```
//!
//! The crate does no I/O: callers read the file, and resolve `component` paths and run `build`
//! commands relative to the manifest's directory themselves. Route matching
//! ([`RoutePattern::matches`]) and outbound checks ([`OutboundHost::allows`]) live here too, so
//! the gateway and the engine share one definition of the syntax and its meaning.
//!
//! # Layout
//!
//! Parsing runs in two stages, as in Spin: TOML → raw spanned structs → validated model.
//!
//! - `schema` — the raw serde structs: which keys exist, every value [`toml::Spanned`], unknown
//!   keys rejected.
//! - `validate` — every rule on the raw structs, building the [`App`] and filling in defaults.
//! - `app` — the validated model: [`App`], [`Function`], [`Limits`].
//! - `route` — route syntax and matching: [`Route`], [`RoutePattern`].
//! - `outbound` — `allowed_outbound_hosts` syntax and matching: [`OutboundHost`].
//! - `config` — `[function.config]`, `secrets` and `buckets`: what `wasi:config` and
//!   `wasi:blobstore` serve.
//! - `triggers` — `[[queue]]`, `[[trigger.queue]]` and `[[trigger.cron]]`;
//!   `change_triggers` — `[[trigger.object]]` and `[[trigger.kv]]`.
//! - [`cron`] — cron schedules in a time zone ([`cron::Schedule`]).
//! - `host` — host-name syntax shared by routes and outbound hosts.
//! - `error` — [`ManifestError`] and byte-offset → line/column conversion.
//! - `locate` — turns toml's own errors into [`ManifestError`]s that name the field.

mod app;
mod change_triggers;
mod config;
pub mod cron;
mod error;
mod host;
mod locate;
mod outbound;
mod route;
mod schema;
mod triggers;
mod validate;

pub use app::{
    App, AsyncConfig, ChangeKind, ChangeTrigger, CronTrigger, Function, Limits, MissedTicks, Queue,
    QueueTrigger, Triggers,
};
pub use config::{check_bucket_name, check_config_name};
pub use error::ManifestError;
pub use outbound::{HostPattern, OutboundHost, PortPattern};
pub use route::{Route, RoutePattern};
pub use validate::check_resource_name;

/// Parses and validates the text of a `nimbus.toml`.
///
/// `file` is only used in error messages; pass the path as the user would recognise it.
///
/// ```
/// let app = nimbus_manifest::parse(
///     r#"
///         [app]
///         name = "shop"
///
///         [[function]]
///         name = "api"
///         component = "dist/api.wasm"
///         routes = ["/api/..."]
///         memory_mb = 64
///     "#,
///     "nimbus.toml",
/// )?;
/// let api = &app.functions[0];
/// assert!(api.routes[0].pattern.matches("/api/users"));
/// assert!(!api.routes[0].pattern.matches("/apix"));
/// assert_eq!(api.limits.memory_mb, 64);
/// assert_eq!(api.limits.timeout_ms, 30_000);
///
/// let err = nimbus_manifest::parse("[app]\nname = \"Shop\"\n", "nimbus.toml").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"nimbus.toml:2:8: app.name: "Shop" must start with a lowercase letter (try "shop")"#
/// );
/// # Ok::<(), nimbus_manifest::ManifestError>(())
/// ```
pub fn parse(source: &str, file: &str) -> Result<App, ManifestError> {
    let raw: schema::RawManifest =
        toml::from_str(source).map_err(|err| locate::toml_error(&err, source, file))?;
    validate::validate(raw, &validate::Source { file, text: source })
}
