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

/// `APP` or `APP/FUNCTION` (as `nimbus usage` and `nimbus logs` take it) as (app, function).
pub(crate) fn split_target(target: Option<&str>) -> (Option<&str>, Option<&str>) {
    match target {
        None => (None, None),
        Some(target) => match target.split_once('/') {
            Some((app, function)) => (Some(app), Some(function)),
            None => (Some(target), None),
        },
    }
}
