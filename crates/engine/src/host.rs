//! The data of one invocation's `Store`: WASI and wasi-http contexts, the key-value and blobstore
//! capabilities,
//! the `wasi:config` values,
//! the resource table, the memory limiter, the outbound policy and the CPU meter.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::blobstore::BlobCtx;
use crate::keyvalue::KvCtx;
use crate::outbound::OutboundPolicy;

/// Per-invocation host state.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) kv: KvCtx,
    pub(crate) blob: BlobCtx,
    pub(crate) queue: crate::queue::QueueCtx,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) table: ResourceTable,
    pub(crate) limits: crate::usage::Limiter,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) cpu: CpuMeter,
    pub(crate) cpu_slot: crate::fair::CpuSlot,
    /// The guest's stdout/stderr, rebound when a pre-instantiated instance is taken.
    pub(crate) log: crate::guest_log::GuestLog,
}

/// Counts the epoch ticks during which the guest was running, as a CPU-time budget.
///
/// The epoch deadline is set one tick ahead; every time it passes while wasm code runs, the
/// engine calls back, we count one tick and yield to the async runtime (so a busy guest shares
/// its worker thread with everyone else). Ticks that pass while the guest waits on I/O never
/// trigger the callback, so waiting does not use up the budget — the wall-clock timeout covers
/// that.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    /// Milliseconds of running the guest may use.
    pub budget_ms: u64,
    /// Milliseconds it has been charged so far: each epoch tick it is running at charges the
    /// tick's length.
    pub used_ms: u64,
    /// Milliseconds charged since it last yielded.
    pub since_yield_ms: u64,
    /// While the ticker runs slow, the guest yields after this many milliseconds of running
    /// (while it runs fast — a contended machine, or requests being turned away — at every
    /// tick; see `fair`).
    pub slice_ms: u64,
    /// Set when the budget ran out and the guest was interrupted.
    pub exhausted: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
