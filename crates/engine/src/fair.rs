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
//!
//! Requests that finish within their first tick never meet a tick, so a flood of *short*
//! CPU-heavy requests (a deep recursion, say, 2 ms each) would slip past the slots. Each app
//! therefore keeps its recent CPU time per invocation (an exponential moving average); while it
//! is at least [`HEAVY_CPU`], its invocations take a slot *before* their first slice too, so
//! the app is held to its slots whatever the length of its requests. Light apps (a hello world
//! uses tens of µs) never touch a slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Average CPU time per invocation past which an app's invocations queue for a CPU slot before
/// they start.
pub(crate) const HEAVY_CPU: Duration = Duration::from_millis(1);

/// The weight of the newest invocation in an app's moving average of CPU time (1/8: a change
/// of behaviour shows within a few dozen invocations).
const CPU_AVERAGE_SHIFT: u32 = 3;

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
    /// Moving average of the CPU time of the app's invocations, in µs.
    recent_cpu_us: Arc<AtomicU64>,
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
                recent_cpu_us: Arc::new(AtomicU64::new(0)),
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

    /// Adds one invocation's CPU time to the app's moving average.
    pub(crate) fn note_cpu(&self, used: Duration) {
        let sample = used.as_micros().min(u128::from(u32::MAX)) as i64;
        let _ = self
            .recent_cpu_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let old = old as i64;
                Some((old + ((sample - old) >> CPU_AVERAGE_SHIFT)).max(0) as u64)
            });
    }

    /// Whether the app's recent invocations are CPU-heavy (see the module docs).
    pub(crate) fn is_heavy(&self) -> bool {
        self.recent_cpu_us.load(Ordering::Relaxed) >= HEAVY_CPU.as_micros() as u64
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

    /// Takes one of the app's slots for the guest's first slice (held until its first tick or
    /// its end, like any later slice): how a CPU-heavy app's short requests are held to its
    /// slots.
    pub(crate) async fn first_slice(&self) {
        let permit = self.app.clone().acquire_owned().await.ok();
        *self.lock() = permit;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_turns_heavy_and_light_again_with_its_recent_cpu_use() {
        let share = FairShare::new(1, 10).app("t", "a");
        assert!(!share.is_heavy());
        for _ in 0..10 {
            share.note_cpu(Duration::from_micros(50));
        }
        assert!(!share.is_heavy(), "a hello world is light");
        for _ in 0..20 {
            share.note_cpu(Duration::from_millis(3));
        }
        assert!(share.is_heavy(), "3 ms per request is heavy");
        for _ in 0..40 {
            share.note_cpu(Duration::from_micros(20));
        }
        assert!(!share.is_heavy(), "light again once it behaves");
    }

    #[tokio::test]
    async fn a_heavy_apps_first_slices_take_its_slots() {
        let share = FairShare::new(1, 10).app("t", "a");
        let first = CpuSlot::new(share.cpu.clone());
        let second = CpuSlot::new(share.cpu.clone());
        first.first_slice().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.first_slice()).await;
        assert!(waiting.is_err(), "one slot: the second waits");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.first_slice())
            .await
            .unwrap();
    }
}
