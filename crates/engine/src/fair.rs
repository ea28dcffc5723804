//! Fair sharing between apps: CPU slots and instance budgets.
//!
//! **Instances.** Pool slots are shared by every function on the machine, and each function's
//! `max_concurrency` bounds only itself: an app with ten functions at 100 each could take every
//! slot. Each app therefore has an instance budget (`EngineConfig::max_instances_per_app`,
//! default half the pool): an invocation takes one unit for as long as its instance lives,
//! and an app at its budget gets `InvokeError::AppAtCapacity` at once (the gateway answers 429
//! with `Retry-After`, a trigger retries later) while other apps still find free slots.
//!
//! **CPU.**
//! Every busy guest yields to the runtime at each epoch tick (5 ms of running). On its own,
//! that shares a worker thread between *tasks*, so an app with a hundred CPU-bound requests in
//! flight gets a hundred times the CPU of an app with one. To share between *apps*, a guest
//! that has run through a tick must hold one of its app's CPU slots to run its next slice:
//! each app has one slot fewer than the machine has cores (at least one), and at every tick the guest
//! gives its slot back and queues (first come, first served) for one again. However many
//! CPU-bound requests an app has, at most that many of its guests are runnable at once; the
//! rest wait off the run queue, and another app's requests find a core that no CPU-bound
//! guest of the flooding app can take.
//! Requests that finish within their first tick (most of them) never touch a slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shares of every app, created on first use.
pub(crate) struct FairShare {
    slots_per_app: usize,
    instances_per_app: usize,
    apps: Mutex<HashMap<(String, String), AppShare>>,
}

/// What one app may use at once.
#[derive(Clone)]
pub(crate) struct AppShare {
    /// CPU slots (see the module docs).
    pub(crate) cpu: Arc<Semaphore>,
    /// Instance budget: one permit per live instance.
    pub(crate) instances: Arc<Semaphore>,
    /// The budget's size, for error messages.
    pub(crate) max_instances: usize,
}

impl FairShare {
    pub(crate) fn new(slots_per_app: usize, instances_per_app: usize) -> Self {
        Self {
            slots_per_app: slots_per_app.max(1),
            instances_per_app: instances_per_app.max(1),
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// The share of `tenant`'s app `app`.
    pub(crate) fn app(&self, tenant: &str, app: &str) -> AppShare {
        let mut apps = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apps.entry((tenant.to_owned(), app.to_owned()))
            .or_insert_with(|| AppShare {
                cpu: Arc::new(Semaphore::new(self.slots_per_app)),
                instances: Arc::new(Semaphore::new(self.instances_per_app)),
                max_instances: self.instances_per_app,
            })
            .clone()
    }
}

impl AppShare {
    /// One unit of the app's instance budget, or `AppAtCapacity` at once.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, crate::InvokeError> {
        self.instances
            .clone()
            .try_acquire_owned()
            .map_err(|_| crate::InvokeError::AppAtCapacity(self.max_instances))
    }
}

/// The slot one invocation holds while it runs a slice past its first tick.
#[derive(Clone)]
pub(crate) struct CpuSlot {
    app: Arc<Semaphore>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl CpuSlot {
    pub(crate) fn new(app: Arc<Semaphore>) -> Self {
        Self {
            app,
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// Called at a tick: gives the slot back and returns the future that queues for one
    /// again, then yields, so the runtime runs something else before the next slice.
    pub(crate) fn next_slice(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        drop(self.lock().take());
        let app = self.app.clone();
        let held = self.held.clone();
        Box::pin(async move {
            let permit = app.acquire_owned().await.ok();
            *held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = permit;
            tokio::task::yield_now().await;
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
