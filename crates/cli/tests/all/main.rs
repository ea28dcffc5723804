//! Integration tests: one binary (as in wasmtime's tests/all), one module per area, each test
//! against a real Nimbus started in-process on port 0 with real guest components built from
//! source.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod changes;
mod cli;
mod cron;
mod deploy;
mod events;
mod examples;
mod fairness;
mod gateway;
mod guests;
mod hardening;
mod harness;
mod hostile;
mod invoke_async;
mod isolation;
mod kv;
mod logs;
mod objects;
mod prometheus;
mod queues;
mod scaling;
mod secrets;
mod traces;
mod usage;
