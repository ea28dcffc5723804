//! Provisioned concurrency: instances made before their invocation arrives (`min_instances`).
//!
//! A function with `min_instances = n` keeps up to `n` instances ready: a `Store` with the
//! component already instantiated in it, holding a pooling-allocator slot and one unit of its
//! app's instance budget, as Lambda's provisioned concurrency keeps initialised environments.
//! An invocation takes one, binds it to itself ([`FunctionRuntime::bind`]: its ids, the
//! secrets' current values, a fresh CPU budget) and calls it. Each instance still serves
//! exactly one invocation — functions stay stateless — so once the invocation is done a refill
//! starts in the background, and the next invocation finds one ready too. When none is (a burst wider than
//! `n`), the invocation instantiates its own, as every invocation of a function without
//! `min_instances` does.
//!
//! A refill that cannot get an instance (the app's instance budget is spent, or the pooling
//! allocator is full) retries with a backoff while the function version lives; the pool goes
//! away with its version.
//!
//! From its first fill (the deploy) until it goes, a pool's `min_instances` × `memory_mb` are
//! billed as provisioned time ([`crate::kept`]), serving or not.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use nimbus_metering::TriggerKind;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

use crate::error::{EngineError, InvokeError};
use crate::host::HostState;
use crate::kept::KeptBilling;
use crate::residency::{Prepare, Resident};
use crate::runtime::FunctionRuntime;
use crate::spec::Invocation;

/// A boxed future borrowing the store it instantiates into.
pub(crate) type Instantiating<'a, I> =
    Pin<Box<dyn Future<Output = wasmtime::Result<I>> + Send + 'a>>;

/// Prepared code that can be instantiated into a store: `ProxyPre` for HTTP functions,
/// `EventHandlerPre` for event handlers.
pub(crate) trait Instantiate: Prepare {
    /// The instantiated component's bindings.
    type Instance: Send + 'static;

    /// Instantiates the component into `store`.
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> Instantiating<'a, Self::Instance>;
}

/// One instance ready for an invocation (with `I = Option<_>`: what an invocation runs with).
pub(crate) struct Ready<I> {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: I,
    /// The unit of the app's instance budget it holds; the invocation keeps it.
    pub(crate) budget: OwnedSemaphorePermit,
}

/// The longest a refill waits before trying again for an instance it could not get.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The ready instances of one function version (none unless `min_instances > 0`).
pub(crate) struct Provisioned<P: Instantiate> {
    target: usize,
    rt: Arc<FunctionRuntime>,
    code: Arc<Resident<P>>,
    ready: Mutex<Vec<Ready<P::Instance>>>,
    filling: AtomicBool,
    /// Bills the kept instances from the first fill on (none without a usage sink).
    billing: Mutex<Option<Arc<KeptBilling>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<P: Instantiate> Provisioned<P> {
    /// The pool of `min_instances` ready instances.
    pub(crate) fn new(rt: Arc<FunctionRuntime>, code: Arc<Resident<P>>) -> Arc<Self> {
        let target = rt.spec.limits.min_instances as usize;
        Self::with_target(rt, code, target)
    }

    /// A pool keeping `target` instances ready (0: none, whatever `min_instances` says).
    pub(crate) fn with_target(
        rt: Arc<FunctionRuntime>,
        code: Arc<Resident<P>>,
        target: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            target,
            rt,
            code,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            billing: Mutex::new(None),
        })
    }

    /// What `invocation` runs with: a ready instance bound to it, or else a fresh store under
    /// a new unit of the app's budget (`AppAtCapacity` when it has none), the instance still to
    /// be made.
    pub(crate) fn for_invocation(
        &self,
        invocation: &Invocation,
    ) -> Result<Ready<Option<P::Instance>>, InvokeError> {
        if let Some(ready) = self.take(invocation) {
            return Ok(Ready {
                store: ready.store,
                instance: Some(ready.instance),
                budget: ready.budget,
            });
        }
        Ok(Ready {
            budget: self.rt.admit()?,
            store: self.rt.new_store(invocation),
            instance: None,
        })
    }

    /// A ready instance, bound to `invocation`, if there is one.
    fn take(&self, invocation: &Invocation) -> Option<Ready<P::Instance>> {
        if self.target == 0 {
            return None;
        }
        let mut ready = lock(&self.ready).pop()?;
        self.rt.bind(&mut ready.store, invocation);
        Some(ready)
    }

    /// Called once an invocation's instance is gone: starts a refill if instances are missing.
    ///
    /// Refilling after the invocation rather than when it takes its instance leaves the CPU to
    /// the invocation, and lets the replacement reuse the pool slot just freed, whose pages are
    /// still resident (`--keep-resident-kib`): a replacement made while the invocation ran
    /// took another slot each time, and cost the JS hello 2.5 page faults and ~25% more CPU
    /// per request (bench/provisioned_bench.py).
    pub(crate) fn replenish(self: &Arc<Self>) {
        if self.target > 0 {
            self.refill_in_background();
        }
    }

    /// How many instances are ready now.
    pub(crate) fn ready(&self) -> usize {
        lock(&self.ready).len()
    }

    /// Makes instances until `min_instances` are ready, or the app's budget refuses one (the
    /// background refill then keeps trying). A deploy calls this before the version takes
    /// traffic, so an instantiation error fails the deploy.
    pub(crate) async fn fill(self: &Arc<Self>) -> Result<(), EngineError> {
        while self.make_one().await?.is_some() {}
        self.refill_in_background();
        self.start_billing();
        Ok(())
    }

    /// Starts billing the kept instances, once.
    fn start_billing(&self) {
        let Some(sink) = self.rt.engine.services().usage.clone() else {
            return;
        };
        let mut billing = lock(&self.billing);
        if self.target == 0 || billing.is_some() {
            return;
        }
        *billing = Some(KeptBilling::start(
            sink,
            self.rt.names().clone(),
            u32::try_from(self.target).unwrap_or(u32::MAX),
            self.rt.spec.limits.memory_mb,
            crate::kept::SPAN,
        ));
    }

    fn missing(&self) -> bool {
        lock(&self.ready).len() < self.target
    }

    /// Starts the refill task unless the pool is full or one is running. It runs on the
    /// engine's CPU runtime (see `offload`): instantiating takes several ms for a JS guest,
    /// which on the runtime serving requests would delay other apps' requests behind it.
    fn refill_in_background(self: &Arc<Self>) {
        if !self.missing() || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        self.rt
            .engine
            .cpu_runtime()
            .spawn(refill(Arc::downgrade(self)));
    }

    /// Makes one instance if one is missing. `Ok(None)`: none is missing, or the app's budget
    /// has no unit for it now.
    async fn make_one(&self) -> Result<Option<()>, EngineError> {
        if !self.missing() {
            return Ok(None);
        }
        let Ok(budget) = self.rt.admit() else {
            return Ok(None);
        };
        let started = Instant::now();
        let mut store = self.rt.new_store(&placeholder());
        let pre = self.code.prepared().await?;
        let instance = pre
            .instantiate(&mut store)
            .await
            .map_err(|e| EngineError::Instantiate(format!("{e:#}")))?;
        // Work the app caused, though no invocation pays for it.
        self.rt.share().add_cpu(started.elapsed());
        lock(&self.ready).push(Ready {
            store,
            instance,
            budget,
        });
        Ok(Some(()))
    }
}

/// Replenishes the pool when dropped: at the end of an invocation, also one whose caller went
/// away.
pub(crate) struct ReplenishOnDrop<P: Instantiate>(pub(crate) Arc<Provisioned<P>>);

impl<P: Instantiate> Drop for ReplenishOnDrop<P> {
    fn drop(&mut self) {
        self.0.replenish();
    }
}

/// Whose an instance is until an invocation takes it.
fn placeholder() -> Invocation {
    Invocation::new("provisioned".into(), TriggerKind::Http)
}

/// Fills the pool while it exists; backs off while instances cannot be had.
async fn refill<P: Instantiate>(pool: Weak<Provisioned<P>>) {
    let mut backoff = Duration::from_millis(10);
    let mut warned = false;
    loop {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        match strong.make_one().await {
            Ok(Some(())) => {
                backoff = Duration::from_millis(10);
                warned = false;
                continue;
            }
            Ok(None) if !strong.missing() => {
                strong.filling.store(false, Ordering::Release);
                // An instance taken between the check and the store would find `filling` still
                // set and start no refill: check once more.
                if !strong.missing() || strong.filling.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(err) if !warned => {
                warned = true;
                tracing::warn!(
                    app = %strong.rt.spec.app,
                    function = %strong.rt.spec.function,
                    error = %err,
                    "could not pre-instantiate an instance for min_instances (retrying)"
                );
            }
            Err(_) => {}
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
