//! The wasmtime engine shared by every function, and the load/prepare steps of a deploy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::{ArtifactCache, component_digest};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::event::{EventFunction, EventHandlerPre};
use crate::fair::FairShare;
use crate::function::HttpFunction;
use crate::host::HostState;
use crate::offload::CpuRuntime;
use crate::provisioned::{Instantiate, Instantiating};
use crate::residency::{Components, Prepare, Reaper};
use crate::services::Services;
use crate::spec::FunctionSpec;

/// The shared engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    config: EngineConfig,
    services: Services,
    pooling: bool,
    stop_ticker: Arc<AtomicBool>,
    components: Components,
    reaper: Arc<Reaper>,
    fair: FairShare,
    cpu: CpuRuntime,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A compiled component, ready to be prepared for one or more functions.
#[derive(Clone)]
pub struct LoadedComponent {
    /// The compiled component, shared with every function using the same digest.
    pub component: Arc<Component>,
    /// SHA-256 of the component bytes.
    pub digest: String,
    /// Whether it came from the artifact cache (no compilation happened).
    pub cache_hit: bool,
    /// How long loading took, in milliseconds.
    pub load_ms: u128,
}

impl Engine {
    /// Builds the engine, its linker and its artifact cache, and starts the epoch ticker.
    /// `services` back the platform interfaces (`wasi:keyvalue`, …) of every function.
    pub fn new(config: EngineConfig, services: Services) -> Result<Self, EngineError> {
        let (engine, pooling) = if config.pooling {
            match wasmtime::Engine::new(&wasmtime_config(&config, true)) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!(error = %err, "pooling allocator unavailable; using on-demand allocation");
                    (build_engine(&config, false)?, false)
                }
            }
        } else {
            (build_engine(&config, false)?, false)
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| EngineError::Setup(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| EngineError::Setup(format!("{e:#}")))?;
        crate::queue::add_to_linker(&mut linker)
            .map_err(|e| EngineError::Setup(format!("{e:#}")))?;
        crate::keyvalue::add_to_linker(&mut linker)
            .map_err(|e| EngineError::Setup(format!("{e:#}")))?;
        crate::blobstore::add_to_linker(&mut linker)
            .map_err(|e| EngineError::Setup(format!("{e:#}")))?;
        wasmtime_wasi_config::add_to_linker(&mut linker, |state: &mut HostState| {
            wasmtime_wasi_config::WasiConfig::new(&state.config)
        })
        .map_err(|e| EngineError::Setup(format!("{e:#}")))?;

        let cache = ArtifactCache::open(&config.cache_dir, &engine)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let fair = FairShare::new(
            config.cpu_slots_per_app,
            config.max_instances_per_app as usize,
        );
        spawn_epoch_ticker(
            engine.clone(),
            config.epoch_tick,
            config.uncontended_tick,
            fair.governor().clone(),
            stop_ticker.clone(),
        )?;
        let reaper = Reaper::new();
        Reaper::spawn(&reaper, config.reap_interval)?;
        let cpu = CpuRuntime::new(config.cpu_nice)?;

        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                config,
                services,
                pooling,
                stop_ticker,
                components: Components::default(),
                reaper,
                fair,
                cpu,
            }),
        })
    }

    /// The runtime CPU-bound guests run on (see `offload`).
    pub(crate) fn cpu_runtime(&self) -> &tokio::runtime::Handle {
        self.inner.cpu.handle()
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The services behind the platform interfaces.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// The artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.inner.cache
    }

    /// Loads the compiled artifact of the component with SHA-256 `digest` — shared with the
    /// functions that have it mapped already, else from the cache, if it is there: no need to
    /// read or hash the component itself.
    pub fn load_cached(&self, digest: &str) -> Result<Option<LoadedComponent>, EngineError> {
        let started = Instant::now();
        let component = match self.inner.components.get(digest) {
            Some(shared) => Some(shared),
            None => self
                .inner
                .cache
                .load(&self.inner.engine, digest)?
                .map(|component| self.inner.components.share(digest, component)),
        };
        Ok(component.map(|component| LoadedComponent {
            component,
            digest: digest.to_owned(),
            cache_hit: true,
            load_ms: started.elapsed().as_millis(),
        }))
    }

    /// How many distinct compiled components are in memory (mapped by resident functions).
    pub fn mapped_components(&self) -> usize {
        self.inner.components.mapped()
    }

    /// Runs one reaper pass now (the reaper thread runs one every `reap_interval`): releases
    /// the code of functions idle past their keep-alive window.
    pub fn reap_now(&self) {
        self.inner.reaper.pass(Instant::now());
    }

    pub(crate) fn components(&self) -> &Components {
        &self.inner.components
    }

    pub(crate) fn reaper(&self) -> &Reaper {
        &self.inner.reaper
    }

    pub(crate) fn fair_share(&self) -> &FairShare {
        &self.inner.fair
    }

    /// What the fair-share governor decided in its last window (for `/metrics`).
    pub fn cpu_shares(&self) -> crate::fair::CpuShares {
        self.inner.fair.governor().report()
    }

    /// Loads a component: from the artifact cache if it holds one, else by compiling it (and
    /// storing the result). CPU-heavy on a miss: call it from a blocking task.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, EngineError> {
        let started = Instant::now();
        let digest = component_digest(bytes);
        let engine = &self.inner.engine;
        if let Some(loaded) = self.load_cached(&digest)? {
            return Ok(loaded);
        }
        check_is_component(bytes)?;
        let artifact = engine
            .precompile_component(bytes)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        self.inner.cache.store(&digest, &artifact)?;
        let component = self.inner.cache.load_fresh(engine, &digest)?;
        tracing::info!(digest = %digest, ms = started.elapsed().as_millis(), "compiled component");
        Ok(LoadedComponent {
            component: self.inner.components.share(&digest, component),
            digest,
            cache_hit: false,
            load_ms: started.elapsed().as_millis(),
        })
    }

    /// Type-checks `component` against the host and pre-instantiates it for one function.
    pub fn prepare(
        &self,
        component: &LoadedComponent,
        spec: FunctionSpec,
    ) -> Result<HttpFunction, EngineError> {
        let pre = <ProxyPre<HostState> as Prepare>::prepare(self, &component.component)?;
        Ok(HttpFunction::new(self.clone(), component, pre, spec))
    }

    /// Type-checks `component` as an event handler (`nimbus:events/handler`) and
    /// pre-instantiates it for one function.
    pub fn prepare_event(
        &self,
        component: &LoadedComponent,
        spec: FunctionSpec,
    ) -> Result<EventFunction, EngineError> {
        let pre = <EventHandlerPre<HostState> as Prepare>::prepare(self, &component.component)?;
        Ok(EventFunction::new(self.clone(), component, pre, spec))
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    fn instantiate_pre(
        &self,
        component: &Component,
    ) -> Result<wasmtime::component::InstancePre<HostState>, EngineError> {
        self.inner
            .linker
            .instantiate_pre(component)
            .map_err(|e| EngineError::MissingImport(format!("{e:#}")))
    }
}

impl Prepare for ProxyPre<HostState> {
    fn prepare(engine: &Engine, component: &Component) -> Result<Self, EngineError> {
        ProxyPre::new(engine.instantiate_pre(component)?)
            .map_err(|e| EngineError::WrongWorld(format!("{e:#}")))
    }
}

impl Prepare for EventHandlerPre<HostState> {
    fn prepare(engine: &Engine, component: &Component) -> Result<Self, EngineError> {
        EventHandlerPre::new(engine.instantiate_pre(component)?).map_err(|e| {
            EngineError::WrongWorld(format!(
                "{e:#} (an event function exports nimbus:events/handler@0.1.0)"
            ))
        })
    }
}

impl Instantiate for ProxyPre<HostState> {
    type Instance = wasmtime_wasi_http::p2::bindings::Proxy;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut wasmtime::Store<HostState>,
    ) -> Instantiating<'a, Self::Instance> {
        Box::pin(self.instantiate_async(store))
    }
}

impl Instantiate for EventHandlerPre<HostState> {
    type Instance = crate::event::EventHandler;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut wasmtime::Store<HostState>,
    ) -> Instantiating<'a, Self::Instance> {
        Box::pin(self.instantiate_async(store))
    }
}

fn build_engine(config: &EngineConfig, pooling: bool) -> Result<wasmtime::Engine, EngineError> {
    wasmtime::Engine::new(&wasmtime_config(config, pooling))
        .map_err(|e| EngineError::Setup(format!("{e:#}")))
}

fn wasmtime_config(config: &EngineConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.max_wasm_stack(config.max_wasm_stack);
    c.parallel_compilation(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances);
        pool.total_core_instances(config.max_instances.saturating_mul(4));
        pool.total_memories(config.max_instances.saturating_mul(2));
        pool.total_tables(config.max_instances.saturating_mul(2));
        pool.total_stacks(config.max_instances);
        pool.max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        // Big interpreters (SpiderMonkey, CPython) have large function tables and instance
        // records; the defaults are sized for small modules.
        pool.table_elements(config.max_table_elements);
        pool.max_core_instance_size(4 << 20);
        pool.max_component_instance_size(4 << 20);
        pool.max_memories_per_component(8);
        pool.max_tables_per_component(8);
        // Modules built with reference types (an externref table beside the funcref one, or
        // tables of their own) need more than the default one table per module.
        pool.max_tables_per_module(4);
        // Keep freed slots' pages resident: resetting them in place is cheaper than an
        // madvise + page fault per page on the next request.
        pool.linear_memory_keep_resident(config.keep_resident_bytes);
        pool.table_keep_resident(config.keep_resident_bytes);
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages an instance
        // dirtied. Without it every reset rewrites the whole kept-resident prefix (16 MiB by
        // default: the data image copied back, the rest zeroed) after every invocation, and the
        // first reset of a slot that held another module write-faults every page of it: 5 ms
        // of the JS hello's scale-from-zero activation and a quarter of its warm CPU
        // (BENCHMARKS.md). Falls back to the full rewrite where the ioctl is missing.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// Rejects core modules and garbage with a message that says which it is.
fn check_is_component(bytes: &[u8]) -> Result<(), EngineError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(EngineError::NotAComponent(
            "the file does not start with the WebAssembly magic bytes".into(),
        ));
    }
    // Bytes 4..8 are the version: core modules use layer 0, components layer 1.
    if bytes[6..8] == [0, 0] {
        return Err(EngineError::NotAComponent(
            "this is a core WebAssembly module; wrap it into a component (for example with \
             `wasm-tools component new`) targeting the wasi:http/proxy world"
                .into(),
        ));
    }
    Ok(())
}

/// Advances the engine's epoch on a dedicated thread until `stop` is set — every `tick` while
/// the machine is contended, every `uncontended` otherwise — and ticks the fair-share
/// governor. The thread holds only clones of the engine handle and the
/// governor, so it never keeps other state alive.
fn spawn_epoch_ticker(
    engine: wasmtime::Engine,
    tick: std::time::Duration,
    uncontended: std::time::Duration,
    governor: Arc<crate::fair::Governor>,
    stop: Arc<AtomicBool>,
) -> Result<(), EngineError> {
    std::thread::Builder::new()
        .name("nimbus-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(governor.next_tick(tick, uncontended));
                engine.increment_epoch();
                governor.tick();
            }
        })
        .map(|_| ())
        .map_err(|e| EngineError::Setup(format!("epoch thread: {e}")))
}
