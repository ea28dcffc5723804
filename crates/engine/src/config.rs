//! Tunables of the engine.

use std::path::PathBuf;
use std::time::Duration;

/// How the engine is set up. Defaults suit one machine serving many small functions.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled artifacts are cached (created if missing).
    pub cache_dir: PathBuf,
    /// Use the pooling instance allocator (falls back to on-demand allocation if the host
    /// cannot reserve the address space it needs).
    pub pooling: bool,
    /// Instances that may be alive at once across all functions (pooling slots).
    pub max_instances: u32,
    /// Instances one app may have alive at once across its functions (see `fair`); default
    /// half of `max_instances`, so no single app can take the whole pool.
    pub max_instances_per_app: u32,
    /// Largest linear memory any function may be configured with, in bytes. Per-function caps
    /// (`memory_mb`) are enforced below this by a store limiter.
    pub max_memory_bytes: u64,
    /// Elements any one table of an instance may grow to (both allocators: the pooling slot
    /// size and the store limiter's cap, so `table.grow` fails at the same size on either; on
    /// the on-demand allocator nothing else would stop a guest growing a table to 2^32
    /// elements of host memory).
    pub max_table_elements: usize,
    /// Epoch tick while the machine is contended, or requests were turned away in the last
    /// window (see `fair`): a busy guest yields at every tick, so a request that lands on a
    /// worker running a CPU-bound guest waits at most this long. Also the granularity of CPU
    /// budgets then.
    pub epoch_tick: Duration,
    /// Epoch tick (and slice between yields) while the machine is *not* contended (at least
    /// `epoch_tick`). Ticking and yielding every 1 ms cost the JS hello 8-16% of its throughput
    /// (its caches go cold between slices) and the ticker thread ~0.7% of the CPU, which buys
    /// nothing while no other app waits.
    pub uncontended_tick: Duration,
    /// Bytes of stdout+stderr kept per invocation before the rest is dropped (with a note).
    pub guest_log_limit: usize,
    /// WebAssembly stack limit per instance.
    pub max_wasm_stack: usize,
    /// Bytes of each pooled memory and table slot reset in place when an instance ends,
    /// instead of being returned to the kernel. Resetting keeps the pages mapped, so the next
    /// instance in the slot takes no page faults on them. Where the kernel has `PAGEMAP_SCAN`
    /// (Linux 6.7+) only the pages the instance dirtied are reset, up to this many bytes;
    /// elsewhere this whole prefix is rewritten every time.
    pub keep_resident_bytes: usize,
    /// When an idle function's compiled code is released from memory (and, for the hybrid
    /// policy, loaded again ahead of its next predicted call).
    pub keep_alive: nimbus_scaling::KeepAlivePolicy,
    /// How often the reaper checks idle functions against their keep-alive windows.
    pub reap_interval: Duration,
    /// Guests of one app that may run CPU-bound slices at once (see `fair`); default: the
    /// machine's parallelism minus one (at least one), so a CPU-bound app always leaves a core
    /// to the others (measured in BENCHMARKS.md: with one slot per core a victim's p99 under a
    /// flood was 16 ms, with one fewer 6.7 ms).
    pub cpu_slots_per_app: usize,
    /// Nice value of the threads CPU-bound guests run on (see `offload`); default 0, the
    /// process's own priority. Above 0 the kernel lets the I/O threads and short guests
    /// preempt them at once, but a CPU-bound function then gets a smaller share of a machine
    /// saturated by cheap requests: 12 ms requests beside a hello flood kept 76% of their
    /// throughput at nice 0, 62% at 2 and 38% at 5 (BENCHMARKS.md, fairness).
    /// Neither app should be able to take that much from the other, so the default is
    /// neutral; with the governor holding a flood to its slots, a light app's p99
    /// beside 64 spinning guests is 0.58 ms at nice 0 and 0.62 ms at 5 (0.56 ms alone).
    pub cpu_nice: i32,
}

impl EngineConfig {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            pooling: true,
            max_instances: 1000,
            max_instances_per_app: 500,
            max_memory_bytes: 4 << 30,
            // SpiderMonkey's and CPython's function tables have some 10-20k entries.
            max_table_elements: 100_000,
            // 1 ms against 5 ms: a victim's p99 beside a CPU flood 1.6-1.8 ms against
            // 5.1-6.0 ms (BENCHMARKS.md); only while contended, so it costs nothing otherwise.
            epoch_tick: Duration::from_millis(1),
            uncontended_tick: Duration::from_millis(5),
            guest_log_limit: 64 * 1024,
            max_wasm_stack: 1 << 20,
            // 16 MiB covers the pages a SpiderMonkey (JS) guest dirties per request: with 8 MiB
            // the JS hello took 6 page faults per request, each a TLB-shootdown IPI to the
            // other core, and served 4.0-4.2k req/s; with 16 MiB none and 5.5-5.6k
            // (BENCHMARKS.md). The price: up to this much resident memory per pool slot that
            // ran an instance that large (a guest that touches less keeps only what it touched).
            keep_resident_bytes: 16 << 20,
            keep_alive: nimbus_scaling::KeepAlivePolicy::default(),
            reap_interval: Duration::from_secs(1),
            cpu_slots_per_app: std::thread::available_parallelism()
                .map_or(1, |n| usize::from(n).saturating_sub(1).max(1)),
            cpu_nice: 0,
        }
    }
}
