//! One module per command; each is thin and leaves the work to the library crates.

pub mod apps;
pub mod build;
pub mod delete;
pub mod deploy;
pub mod functions;
pub mod invocations;
pub mod invoke;
pub mod keys;
pub mod kv;
pub mod logs;
pub mod new;
pub mod queue;
pub mod rollback;
pub mod secret;
pub mod up;
pub mod usage;
