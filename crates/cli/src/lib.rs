//! The `nimbus` command and the composition root of the platform.
//!
//! `nimbus up` wires the engine, gateway and control plane together ([`server`]); every other
//! command is a thin client of the control API ([`client`]).
//!
//! # Layout
//!
//! - [`args`]: the command line (clap).
//! - [`commands`]: one module per command.
//! - [`build_cache`]: which builds `nimbus deploy` can skip (fingerprints of their inputs).
//! - [`server`]: starts a whole Nimbus from a [`server::ServerConfig`] (also used by tests).
//! - [`services`]: opens the key-value backend, secret store and object store.
//! - [`client`]: typed control-API client.
//! - [`config`]: server settings resolution and the client credentials file.
//! - [`data_dir`]: the data dir made owner-only at start.
//! - [`output`]: human/JSON output helpers.

pub mod args;
pub mod build_cache;
pub mod client;
pub mod commands;
pub mod config;
pub mod data_dir;
pub mod output;
pub mod server;
pub mod services;
pub mod templates;
