//! Scale to zero: which function versions hold their compiled code in memory.
//!
//! A deployed function is always routable, but its code (the mapped compiled artifact and the
//! type-checked `InstancePre`) is in memory only while it is *resident*. Each function version
//! has a [`Resident`]: the first call after a release activates it again from the on-disk
//! artifact cache (`Component::deserialize_file`, a `mmap`, then the linker type-check), and
//! the engine's reaper thread releases it once its keep-alive policy
//! ([`nimbus_scaling::KeepAlive`]) says the idle period has outlasted its window — or loads it
//! ahead of a predicted call (the hybrid policy's pre-warm). Functions with `min_instances > 0`
//! are never released.
//!
//! Compiled components are shared by digest: any number of functions built from the same
//! component map its code once ([`Components`]), and the mapping goes away with the last
//! resident function that uses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use nimbus_scaling::KeepAlive;
use wasmtime::component::Component;

use crate::engine::{Engine, LoadedComponent};
use crate::error::EngineError;
use crate::spec::FunctionSpec;

/// Compiled components in memory, by digest, held weakly: present while some resident function
/// uses them.
#[derive(Default)]
pub(crate) struct Components {
    by_digest: Mutex<HashMap<String, Weak<Component>>>,
}

impl Components {
    /// The component with `digest` if some function has it mapped.
    pub(crate) fn get(&self, digest: &str) -> Option<Arc<Component>> {
        lock(&self.by_digest).get(digest).and_then(Weak::upgrade)
    }

    /// Shares `component` under `digest`, or returns the one already shared.
    pub(crate) fn share(&self, digest: &str, component: Component) -> Arc<Component> {
        let mut map = lock(&self.by_digest);
        if let Some(existing) = map.get(digest).and_then(Weak::upgrade) {
            return existing;
        }
        let shared = Arc::new(component);
        map.insert(digest.to_owned(), Arc::downgrade(&shared));
        shared
    }

    /// How many distinct components are mapped.
    pub(crate) fn mapped(&self) -> usize {
        let mut map = lock(&self.by_digest);
        map.retain(|_, weak| weak.strong_count() > 0);
        map.len()
    }
}

/// What a function keeps while resident, built from its component by a type-check.
pub(crate) trait Prepare: Clone + Send + Sync + 'static {
    /// Type-checks `component` against the host for this kind of function.
    fn prepare(engine: &Engine, component: &Component) -> Result<Self, EngineError>;
}

struct Warm<P> {
    pre: P,
    // Keeps the mapping alive for the other users of the same digest; `pre` holds it too.
    _component: Arc<Component>,
}

struct Activity {
    in_flight: u32,
    idle_since: Instant,
    keep: KeepAlive,
}

/// The in-memory state of one function version's code.
pub(crate) struct Resident<P> {
    engine: Engine,
    digest: String,
    pinned: bool,
    warm: ArcSwapOption<Warm<P>>,
    activating: tokio::sync::Mutex<()>,
    activity: Mutex<Activity>,
}

impl<P: Prepare> Resident<P> {
    /// A resident function, warm with `pre` (built from `component`) as a deploy leaves it.
    /// Functions with `min_instances > 0` are pinned: never released.
    pub(crate) fn new(
        engine: &Engine,
        component: &LoadedComponent,
        pre: P,
        spec: &FunctionSpec,
    ) -> Arc<Self> {
        let resident = Arc::new(Self {
            engine: engine.clone(),
            digest: component.digest.clone(),
            pinned: spec.limits.min_instances > 0,
            warm: ArcSwapOption::new(Some(Arc::new(Warm {
                pre,
                _component: component.component.clone(),
            }))),
            activating: tokio::sync::Mutex::new(()),
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                keep: KeepAlive::new(&engine.config().keep_alive),
            }),
        });
        let weak: Weak<Self> = Arc::downgrade(&resident);
        engine.reaper().register(weak);
        resident
    }

    /// Whether the code is in memory now.
    pub(crate) fn is_resident(&self) -> bool {
        self.warm.load().is_some()
    }

    /// Starts one invocation: marks the function busy and returns its prepared code, activating
    /// it first if it was released (then the third value, "cold start", is true). The
    /// invocation ends when the returned guard drops.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<(P, Busy<P>, bool), EngineError> {
        let busy = self.begin();
        if let Some(warm) = self.warm.load_full() {
            return Ok((warm.pre.clone(), busy, false));
        }
        let _gate = self.activating.lock().await;
        if let Some(warm) = self.warm.load_full() {
            // Another call activated it while this one waited: it waited all the same.
            return Ok((warm.pre.clone(), busy, true));
        }
        let pre = self.activate()?;
        Ok((pre, busy, true))
    }

    /// Invocations running now.
    pub(crate) fn in_flight(&self) -> u32 {
        lock(&self.activity).in_flight
    }

    /// The prepared code, activating it if it was released, without counting a call: for the
    /// deploy's trial instantiation.
    pub(crate) async fn prepared(&self) -> Result<P, EngineError> {
        if let Some(warm) = self.warm.load_full() {
            return Ok(warm.pre.clone());
        }
        let _gate = self.activating.lock().await;
        match self.warm.load_full() {
            Some(warm) => Ok(warm.pre.clone()),
            None => self.activate(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy<P> {
        let mut activity = lock(&self.activity);
        if activity.in_flight == 0 {
            let idle = activity.idle_since.elapsed();
            activity.keep.observe_idle(idle);
        }
        activity.in_flight += 1;
        Busy(self.clone())
    }

    /// Loads the code from the artifact cache (or another function's mapping of the same
    /// digest) and type-checks it. The caller holds the activation gate.
    fn activate(&self) -> Result<P, EngineError> {
        let started = Instant::now();
        let component = match self.engine.components().get(&self.digest) {
            Some(component) => component,
            None => {
                let loaded = self.engine.load_cached(&self.digest)?.ok_or_else(|| {
                    EngineError::Activate(format!(
                        "the compiled artifact of component {} is missing from the cache; \
                         redeploy the app to rebuild it",
                        self.digest
                    ))
                })?;
                loaded.component
            }
        };
        let pre = P::prepare(&self.engine, &component)?;
        self.warm.store(Some(Arc::new(Warm {
            pre: pre.clone(),
            _component: component,
        })));
        tracing::debug!(digest = %self.digest, took_us = started.elapsed().as_micros() as u64, "function activated");
        Ok(pre)
    }
}

/// Marks an invocation in flight; dropping it ends the invocation.
pub(crate) struct Busy<P: Prepare>(Arc<Resident<P>>);

impl<P: Prepare> Drop for Busy<P> {
    fn drop(&mut self) {
        let mut activity = lock(&self.0.activity);
        activity.in_flight = activity.in_flight.saturating_sub(1);
        if activity.in_flight == 0 {
            activity.idle_since = Instant::now();
        }
    }
}

/// What the reaper asks of every resident function.
pub(crate) trait Reap: Send + Sync {
    /// Releases the code if the idle period has outlasted its window, or loads it if a
    /// pre-warm window has opened.
    fn reap(&self, now: Instant);
}

impl<P: Prepare> Reap for Resident<P> {
    fn reap(&self, now: Instant) {
        if self.pinned {
            return;
        }
        let (idle, windows) = {
            let activity = lock(&self.activity);
            if activity.in_flight > 0 {
                return;
            }
            (
                now.saturating_duration_since(activity.idle_since),
                activity.keep.windows(),
            )
        };
        let wanted = windows.warm_at(idle);
        if !wanted && self.is_resident() {
            // An invocation starting now either loaded the code already (it keeps its clone)
            // or will activate it again.
            self.warm.store(None);
            tracing::debug!(digest = %self.digest, idle_s = idle.as_secs(), "function released");
        } else if wanted
            && !windows.prewarm.is_zero()
            && !self.is_resident()
            && let Ok(_gate) = self.activating.try_lock()
            && !self.is_resident()
            && let Err(e) = self.activate()
        {
            tracing::warn!(digest = %self.digest, error = %e, "pre-warming a function failed");
        }
    }
}

/// The thread that walks every resident function once per interval.
pub(crate) struct Reaper {
    functions: Mutex<Vec<Weak<dyn Reap>>>,
}

impl Reaper {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            functions: Mutex::new(Vec::new()),
        })
    }

    fn register(&self, function: Weak<dyn Reap>) {
        lock(&self.functions).push(function);
    }

    /// One pass: drops the entries of dropped function versions and reaps the others.
    pub(crate) fn pass(&self, now: Instant) {
        let live: Vec<Arc<dyn Reap>> = {
            let mut functions = lock(&self.functions);
            functions.retain(|f| f.strong_count() > 0);
            functions.iter().filter_map(Weak::upgrade).collect()
        };
        for function in live {
            function.reap(now);
        }
    }

    /// Runs [`Reaper::pass`] every `interval` on its own thread, for as long as `reaper` is
    /// alive (the engine holds it).
    pub(crate) fn spawn(reaper: &Arc<Self>, interval: Duration) -> Result<(), EngineError> {
        let weak = Arc::downgrade(reaper);
        std::thread::Builder::new()
            .name("nimbus-reaper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(reaper) = weak.upgrade() else { return };
                    reaper.pass(Instant::now());
                }
            })
            .map(|_| ())
            .map_err(|e| EngineError::Setup(format!("reaper thread: {e}")))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
