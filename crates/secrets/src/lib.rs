//! Secrets of Nimbus apps: API keys, passwords, tokens that functions read through
//! `wasi:config` and nobody else ever sees.
//!
//! - **Encrypted at rest**: each value is sealed with ChaCha20-Poly1305 under a 256-bit master
//!   key, with the secret's full name (`tenant/app/name`) as associated data, so a sealed value
//!   copied to another name does not open. The master key lives in a file of its own
//!   (`<data>/secrets.key`, mode 0600, created on first start) or is supplied by the operator
//!   ([`MasterKey::from_hex`]), in which case the data dir holds nothing that decrypts them.
//! - **Decrypted only in memory**, once at open and on each change, into a snapshot that
//!   functions read without locks; plaintext buffers are zeroed when dropped.
//! - **Never shown**: listings carry names and timestamps only; [`Secret`]'s `Debug` prints
//!   `***`; errors name secrets, never values.
//!
//! # Layout
//!
//! - [`key`]: the master key — load, create, parse.
//! - [`store`]: [`SecretStore`] — set, remove, list, resolve.
//! - [`seal`]: [`Sealer`] — the authenticated encryption itself, shared with other stores.
//! - [`error`]: the error type, [`SecretError`].

pub mod error;
pub mod key;
pub mod seal;
pub mod store;

pub use error::SecretError;
pub use key::MasterKey;
pub use seal::Sealer;
pub use store::{Secret, SecretInfo, SecretStore};

/// Longest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Checks a secret name: the rule of config names (`nimbus_manifest::check_config_name`).
pub fn check_name(name: &str) -> Result<(), String> {
    nimbus_manifest::check_config_name(name)
}
