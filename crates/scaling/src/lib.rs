//! Scaling decisions as pure code: no clocks, no I/O, no wasmtime.
//!
//! The engine asks these types what to keep in memory; the keep-alive replay
//! (`examples/keepalive_replay.rs`, run by `bench/keepalive_replay.sh`) feeds them a synthetic
//! week shaped like the Azure Functions 2019 trace. Both run the same code, so what the replay
//! reports is what the engine does.
//!
//! - [`keepalive`]: when an idle function's compiled code is released and when it is loaded
//!   again ahead of the next call: a fixed window, or the hybrid histogram policy of Shahrad et
//!   al., "Serverless in the Wild" (USENIX ATC 2020).

pub mod keepalive;

pub use keepalive::{HybridConfig, KeepAlive, KeepAlivePolicy, Windows};
