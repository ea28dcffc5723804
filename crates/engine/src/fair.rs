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
//! Every busy guest yields to the runtime at each epoch tick: every 1 ms of running while the
//! machine is contended, every 5 ms otherwise (the ticker slows down). On its own,
//! that shares a worker thread between *tasks*, so an app with a hundred CPU-bound requests in
//! flight gets a hundred times the CPU of an app with one. To share between *apps*, a guest
//! that has run through a tick must hold one of its app's CPU slots to run its next slice:
//! each app has one slot fewer than the machine has cores (at least one), and at every tick the guest
//! gives its slot back and queues (first come, first served) for one again. However many
//! CPU-bound requests an app has, at most that many of its guests are runnable at once; the
//! rest wait off the run queue, and another app's requests find a core that no CPU-bound
//! guest of the flooding app can take. While apps contend, a tick yields only a guest that
//! has run for at least [`MIN_SLICE`] in all ([`CpuSlot::may_yield`]): a short request that a
//! tick happens to land on finishes instead of queueing again behind other apps' slices.
//!
//! Requests that finish within their first tick never meet a tick, so a flood of *short*
//! requests would slip past the slots. Two rules close that gap; both hold an app's
//! invocations to its slots *before* their first slice too, whatever their length:
//!
//! - **Heavy apps.** Each app keeps its recent CPU time per invocation (an exponential moving
//!   average); while it is at least [`HEAVY_CPU`] (a 2 ms burn, say), the app is heavy.
//! - **Apps over their share.** Every [`WINDOW`] the governor looks at the machine: how busy
//!   its CPUs were (`/proc/stat`: every process, so clients and neighbours on the same box
//!   count), and the guest CPU time each app used. While the process is saturated ([`SATURATED`]) and at least
//!   two apps are active (an invocation within [`ACTIVE_FOR`]), an app that used more than
//!   [`OVER_SHARE`] times an equal split of the guests' CPU is *throttled*. A flood of cheap
//!   requests that trap (a deep recursion costs ~100 µs of unwinding) is caught this way,
//!   where the per-invocation average would not see it.
//!
//! Both rules, and the slots at each tick, apply only while the machine is **contended**
//! (saturated, two apps or more active): an app alone on the machine, or on an idle one, uses
//! every core — the sharing is work-conserving. Light apps on a contended machine (a hello
//! world uses tens of µs) never touch a slot either, unless they take more than their share.
//! A contended machine stays so while guests wait for slots, even if it is no longer
//! saturated (down to [`HELD_BUSY`]): the slots are then what keeps it below saturation.
//! Without that, a flood of CPU-bound requests beside a light app flipped the machine between
//! contended (slots hold the flood to one core: 80% busy) and not (the flood takes both cores,
//! with 5 ms ticks) from one window to the next, and the light app's p99 was 3.6–4 ms against
//! 0.6–0.8 ms alone (BENCHMARKS.md, fairness).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Average CPU time per invocation past which an app's invocations queue for a CPU slot before
/// they start (while the machine is contended).
pub(crate) const HEAVY_CPU: Duration = Duration::from_millis(1);

/// The weight of the newest invocation in an app's moving average of CPU time (1/8: a change
/// of behaviour shows within a few dozen invocations).
const CPU_AVERAGE_SHIFT: u32 = 3;

/// How often the governor looks at the machine's load and the apps' CPU use.
/// (`/proc/stat` counts in 10 ms ticks: on two cores a window is ten of them.)
pub(crate) const WINDOW: Duration = Duration::from_millis(50);

/// The machine's CPU use, as a fraction of all its CPU time, from which it is saturated.
pub(crate) const SATURATED: f64 = 0.8;

/// Below this fraction of its CPU time in use, the machine is not contended even while guests
/// wait for slots (see [`Governor::rebalance`]): a flood held to its slots keeps at least
/// (cores − 1) / cores of it busy, ≥ 0.5; guests that wait while the machine idles wait for
/// slots held by guests blocked on I/O, and the slots should let go.
pub(crate) const HELD_BUSY: f64 = 0.4;

/// An app using more than this times an equal split of the guests' CPU, on a contended
/// machine, is throttled.
pub(crate) const OVER_SHARE: f64 = 1.25;

/// While apps contend, how long a guest must have run before an epoch tick makes it yield
/// ([`CpuSlot::may_yield`]): half of the default 1 ms contended tick.
pub(crate) const MIN_SLICE: Duration = Duration::from_micros(500);

/// How long after its last invocation an app is still owed a share: a victim between two
/// requests still counts.
pub(crate) const ACTIVE_FOR: Duration = Duration::from_secs(1);

/// The shares of every app, created on first use, and the governor that decides when they
/// apply.
pub(crate) struct FairShare {
    slots_per_app: usize,
    instances_per_app: usize,
    apps: Mutex<HashMap<(String, String), AppShare>>,
    governor: Arc<Governor>,
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
    load: Arc<AppLoad>,
    governor: Arc<Governor>,
}

/// What the governor decided in its last window, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct CpuShares {
    /// Whether the machine is contended (CPU slots apply; see the module docs).
    pub contended: bool,
    /// The apps active within the last second.
    pub apps: Vec<AppCpuShare>,
}

/// One active app as the governor sees it.
#[derive(Debug, Clone)]
pub struct AppCpuShare {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// Over its share on a contended machine: its invocations queue for a CPU slot.
    pub throttled: bool,
    /// Its invocations average ≥ [`HEAVY_CPU`] of CPU.
    pub heavy: bool,
}

/// What the governor knows of one app.
struct AppLoad {
    tenant: String,
    app: String,
    /// Moving average of the CPU time of the app's invocations, in µs.
    recent_cpu_us: AtomicU64,
    /// Guest CPU time in the current window, in ns.
    window_cpu_ns: AtomicU64,
    /// Whether the app is on the governor's list of active apps.
    listed: AtomicBool,
    /// The last window in which the app used CPU.
    last_active: AtomicU64,
    /// Over its share on a contended machine (see the module docs).
    throttled: AtomicBool,
}

/// Decides, every [`WINDOW`], whether the machine is contended and which apps are over their
/// share. Driven by the engine's epoch thread ([`Governor::tick`]).
pub(crate) struct Governor {
    cores: f64,
    /// The length of the epoch tick now in progress, in ms (the ticker sets it).
    tick_ms: AtomicU64,
    /// Whether the ticker runs fast: while contended, or after a window with rejections.
    fast: AtomicBool,
    /// A request was turned away (429) in the current window.
    rejected: AtomicBool,
    /// A guest waited for one of its app's CPU slots in the current window.
    held_back: AtomicBool,
    contended: AtomicBool,
    window: AtomicU64,
    active: Mutex<Vec<Arc<AppLoad>>>,
    last: Mutex<Option<CpuSample>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FairShare {
    pub(crate) fn new(slots_per_app: usize, instances_per_app: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        origin();
        Self {
            slots_per_app: slots_per_app.max(1),
            instances_per_app: instances_per_app.max(1),
            apps: Mutex::new(HashMap::new()),
            governor: Arc::new(Governor::new(cores)),
        }
    }

    /// The governor, for the thread that ticks it.
    pub(crate) fn governor(&self) -> &Arc<Governor> {
        &self.governor
    }

    /// The share of `tenant`'s app `app`.
    pub(crate) fn app(&self, tenant: &str, app: &str) -> AppShare {
        let mut apps = lock(&self.apps);
        apps.entry((tenant.to_owned(), app.to_owned()))
            .or_insert_with(|| AppShare {
                cpu: Arc::new(Semaphore::new(self.slots_per_app)),
                instances: Arc::new(Semaphore::new(self.instances_per_app)),
                max_instances: self.instances_per_app,
                load: Arc::new(AppLoad {
                    tenant: tenant.to_owned(),
                    app: app.to_owned(),
                    recent_cpu_us: AtomicU64::new(0),
                    window_cpu_ns: AtomicU64::new(0),
                    listed: AtomicBool::new(false),
                    last_active: AtomicU64::new(0),
                    throttled: AtomicBool::new(false),
                }),
                governor: self.governor.clone(),
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

    /// Notes a request of this app turned away (429); see [`Governor::next_tick`].
    pub(crate) fn note_rejection(&self) {
        self.governor.note_rejection();
    }

    /// Adds one slice of guest CPU time to the app's use in the current window.
    pub(crate) fn add_cpu(&self, used: Duration) {
        let ns = used.as_nanos().min(u128::from(u64::MAX)) as u64;
        let before = self.load.window_cpu_ns.fetch_add(ns, Ordering::SeqCst);
        if before == 0 && !self.load.listed.swap(true, Ordering::SeqCst) {
            lock(&self.governor.active).push(self.load.clone());
        }
    }

    /// Drops `instance` (a finished invocation's store: resetting its memories, tables and
    /// stack in the pool), counting the time in the app's share — work the app caused.
    pub(crate) fn drop_counted<T>(&self, instance: T) {
        let started = Instant::now();
        drop(instance);
        self.add_cpu(started.elapsed());
    }

    /// Adds one invocation's CPU time to the app's moving average.
    pub(crate) fn note_cpu(&self, used: Duration) {
        let sample = used.as_micros().min(u128::from(u32::MAX)) as i64;
        let _ = self
            .load
            .recent_cpu_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let old = old as i64;
                Some((old + ((sample - old) >> CPU_AVERAGE_SHIFT)).max(0) as u64)
            });
    }

    /// Whether the app's recent invocations are CPU-heavy (see the module docs).
    pub(crate) fn is_heavy(&self) -> bool {
        self.load.is_heavy()
    }

    /// Whether the app's next invocation takes a CPU slot before its first slice: the machine
    /// is contended and the app is heavy or over its share.
    pub(crate) fn waits_for_a_slot(&self) -> bool {
        self.governor.is_contended() && self.is_cpu_bound()
    }

    /// Whether the app's invocations start on the engine's CPU runtime (see `offload`): they
    /// are CPU-heavy on average, or the app was over its share of a contended machine.
    pub(crate) fn is_cpu_bound(&self) -> bool {
        self.is_heavy() || self.load.throttled.load(Ordering::Relaxed)
    }

    /// Whether the governor found the app over its share in the last window.
    #[cfg(test)]
    fn is_throttled(&self) -> bool {
        self.load.throttled.load(Ordering::Relaxed)
    }
}

impl AppLoad {
    fn is_heavy(&self) -> bool {
        self.recent_cpu_us.load(Ordering::Relaxed) >= HEAVY_CPU.as_micros() as u64
    }
}

impl Governor {
    /// What the last window decided.
    pub(crate) fn report(&self) -> CpuShares {
        let active = lock(&self.active);
        CpuShares {
            contended: self.is_contended(),
            apps: active
                .iter()
                .map(|a| AppCpuShare {
                    tenant: a.tenant.clone(),
                    app: a.app.clone(),
                    throttled: a.throttled.load(Ordering::Relaxed),
                    heavy: a.is_heavy(),
                })
                .collect(),
        }
    }

    fn new(cores: usize) -> Self {
        Self {
            cores: cores.max(1) as f64,
            tick_ms: AtomicU64::new(1),
            fast: AtomicBool::new(false),
            rejected: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
            contended: AtomicBool::new(false),
            window: AtomicU64::new(0),
            active: Mutex::new(Vec::new()),
            last: Mutex::new(None),
        }
    }

    /// The epoch tick to sleep next: `contended` while the machine is contended or a request
    /// was turned away in the last window (so a busy guest yields within a tick and the 429
    /// is answered soon), else `uncontended`; guests ticked at its end are charged its length.
    pub(crate) fn next_tick(&self, contended: Duration, uncontended: Duration) -> Duration {
        let tick = if self.fast.load(Ordering::Relaxed) {
            contended
        } else {
            uncontended.max(contended)
        };
        self.tick_ms
            .store(tick.as_millis().max(1) as u64, Ordering::Relaxed);
        tick
    }

    /// Notes a request turned away (429): the ticker runs fast for the next window.
    pub(crate) fn note_rejection(&self) {
        self.rejected.store(true, Ordering::Relaxed);
    }

    /// Notes a guest waiting for one of its app's CPU slots: while that happens, the slots are
    /// what keeps the machine below saturation, and it stays contended ([`Self::rebalance`]).
    pub(crate) fn note_held_back(&self) {
        self.held_back.store(true, Ordering::Relaxed);
    }

    /// Whether CPU slots apply now (see the module docs).
    pub(crate) fn is_contended(&self) -> bool {
        self.contended.load(Ordering::Relaxed)
    }

    /// Called often (each epoch tick): once a [`WINDOW`] has passed, measures how busy the
    /// machine's CPUs were over it and rebalances.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        let mut last = lock(&self.last);
        if last
            .as_ref()
            .is_some_and(|l| now.duration_since(l.at) < WINDOW)
        {
            return;
        }
        let sample = CpuSample::take(now);
        let busy = last
            .as_ref()
            .map(|before| sample.busy_since(before, self.cores));
        *last = Some(sample);
        drop(last);
        if let Some(busy) = busy {
            self.rebalance(busy);
        }
    }

    /// Ends a window in which `busy` of the machine's CPU time (0.0–1.0) was used:
    /// takes each active app's CPU use, drops apps idle for longer than [`ACTIVE_FOR`], and
    /// decides which apps are throttled.
    pub(crate) fn rebalance(&self, busy: f64) {
        let window = self.window.fetch_add(1, Ordering::Relaxed) + 1;
        let idle_windows = (ACTIVE_FOR.as_millis() / WINDOW.as_millis()) as u64;
        let mut active = lock(&self.active);
        let mut used = Vec::with_capacity(active.len());
        active.retain(|app| {
            let ns = app.window_cpu_ns.swap(0, Ordering::SeqCst);
            if ns > 0 {
                app.last_active.store(window, Ordering::Relaxed);
            }
            let recent = window - app.last_active.load(Ordering::Relaxed) <= idle_windows;
            if !recent {
                app.throttled.store(false, Ordering::Relaxed);
                app.listed.store(false, Ordering::SeqCst);
                // It used CPU again just now, before it saw itself unlisted: keep it.
                if app.window_cpu_ns.load(Ordering::SeqCst) == 0
                    || app.listed.swap(true, Ordering::SeqCst)
                {
                    return false;
                }
            }
            used.push(ns);
            true
        });
        let total: u64 = used.iter().sum();
        // Once contended, the slots hold the busiest apps back, and the machine may then fall
        // below `SATURATED` only because of them: letting go would saturate it again at once.
        // So it stays contended while any guest had to wait for a slot, unless the machine is
        // mostly idle (`HELD_BUSY`).
        let held_back = self.held_back.swap(false, Ordering::Relaxed);
        let saturated =
            busy >= SATURATED || (self.is_contended() && held_back && busy >= HELD_BUSY);
        let contended = saturated && active.len() >= 2;
        self.contended.store(contended, Ordering::Relaxed);
        let rejected = self.rejected.swap(false, Ordering::Relaxed);
        self.fast.store(contended || rejected, Ordering::Relaxed);
        let fair = total as f64 / active.len().max(1) as f64;
        for (app, ns) in active.iter().zip(used) {
            let over = contended && ns as f64 > fair * OVER_SHARE;
            if app.throttled.swap(over, Ordering::Relaxed) != over {
                tracing::debug!(tenant = %app.tenant, app = %app.app, throttled = over, busy, "app share changed");
            }
        }
    }
}

/// What the CPUs had done at one moment: the machine's busy and total time from
/// `/proc/stat` (every process counts: the clients on the same box, a noisy neighbour), or,
/// where that cannot be read, this process's CPU time.
struct CpuSample {
    at: Instant,
    /// Machine-wide (busy, total) clock ticks, if `/proc/stat` was readable.
    machine: Option<(u64, u64)>,
    process: Duration,
}

impl CpuSample {
    fn take(at: Instant) -> Self {
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| parse_proc_stat(&stat));
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let process = Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        );
        Self {
            at,
            machine,
            process,
        }
    }

    /// The fraction of the CPU time between `before` and this sample that was used.
    fn busy_since(&self, before: &CpuSample, cores: f64) -> f64 {
        if let (Some((busy, total)), Some((busy0, total0))) = (self.machine, before.machine)
            && total > total0
        {
            return busy.saturating_sub(busy0) as f64 / (total - total0) as f64;
        }
        let wall = self.at.duration_since(before.at).as_secs_f64() * cores;
        self.process.saturating_sub(before.process).as_secs_f64() / wall.max(f64::EPSILON)
    }
}

/// (busy, total) ticks of all CPUs from `/proc/stat`'s first line (`cpu user nice system idle
/// iowait irq softirq steal …`): idle and iowait are idle; time stolen by the hypervisor is
/// busy (it was not available).
fn parse_proc_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// The origin of [`CpuSlot`]'s poll stamps.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The slot one invocation holds while it runs a slice past its first tick, and how long its
/// guest has run (a tick yields only a guest that has run [`MIN_SLICE`]).
#[derive(Clone)]
pub(crate) struct CpuSlot {
    app: Arc<Semaphore>,
    governor: Arc<Governor>,
    state: Arc<SlotState>,
}

/// What the clones of one invocation's [`CpuSlot`] share (one allocation per invocation).
struct SlotState {
    held: Mutex<Option<OwnedSemaphorePermit>>,
    /// When the guest would have begun running had it run without a break: its current poll's
    /// start less the time its earlier polls ran, in ns since [`origin`] (0: never noted).
    ran_since_ns: AtomicU64,
    /// An epoch tick has made the guest yield (see `offload`).
    sliced: AtomicBool,
}

impl CpuSlot {
    pub(crate) fn new(share: &AppShare) -> Self {
        Self {
            app: share.cpu.clone(),
            governor: share.governor.clone(),
            state: Arc::new(SlotState {
                held: Mutex::new(None),
                ran_since_ns: AtomicU64::new(0),
                sliced: AtomicBool::new(false),
            }),
        }
    }

    /// Notes that the guest's future is polled from `at` on, after running for `ran_before` in
    /// its earlier polls (`UsageMeter::timed` calls it at every poll).
    pub(crate) fn polling_from(&self, at: Instant, ran_before: Duration) {
        let ns = at.saturating_duration_since(origin()).as_nanos() as u64;
        let since = ns.saturating_sub(ran_before.as_nanos() as u64);
        self.state
            .ran_since_ns
            .store(since.max(1), Ordering::Relaxed);
    }

    /// Whether an epoch tick may make the guest yield: on an uncontended machine always (the
    /// ticker's own rules apply), while apps contend only once it has run for at least
    /// [`MIN_SLICE`] in all (its earlier polls and the current one). A tick lands on a short
    /// request at random (a hello world runs ~30 µs, so at 1 ms ticks on ~3% of them), and
    /// yielding sent that request to the back of the run queue, behind the other apps' slices,
    /// which set a victim app's p99 under a flood of cheap requests. A guest that runs on is
    /// caught by the next tick; a CPU-bound one has run for longer than that after its first
    /// slice, so it still yields at every tick.
    ///
    /// Not on an uncontended machine: there a lone function at its `max_concurrency` whose
    /// guests are CPU-bound relies on being cut at ticks for its 429s to be answered soon —
    /// with the rule applied there too, its rejections at 2× its capacity took 6.1–6.8 ms p99
    /// instead of ~5 (BENCHMARKS.md, hostile functions).
    pub(crate) fn may_yield(&self) -> bool {
        !self.governor.is_contended() || self.ran_a_slice()
    }

    /// Whether the guest has run for at least [`MIN_SLICE`] in all (a guest whose polls were
    /// never noted counts as having run it).
    fn ran_a_slice(&self) -> bool {
        let started = self.state.ran_since_ns.load(Ordering::Relaxed);
        if started == 0 {
            return true;
        }
        let now = Instant::now()
            .saturating_duration_since(origin())
            .as_nanos() as u64;
        now.saturating_sub(started) >= MIN_SLICE.as_nanos() as u64
    }

    /// Takes one of the app's slots for the guest's first slice (held until its first tick or
    /// its end, like any later slice): how a heavy or throttled app's short requests are held
    /// to its slots.
    pub(crate) async fn first_slice(&self) {
        let permit = acquire(&self.app, &self.governor).await;
        *lock(&self.state.held) = permit;
    }

    /// At an epoch tick: how long the tick was, in ms, and whether a busy guest yields at
    /// every tick now (the ticker runs fast: contended, or requests being turned away).
    pub(crate) fn tick(&self) -> (u64, bool) {
        (
            self.governor.tick_ms.load(Ordering::Relaxed),
            self.governor.fast.load(Ordering::Relaxed),
        )
    }

    /// Whether an epoch tick has made the guest yield ([`Self::next_slice`]): it has run for a
    /// whole tick, and `offload` moves it to the engine's CPU runtime.
    pub(crate) fn has_sliced(&self) -> bool {
        self.state.sliced.load(Ordering::Relaxed)
    }

    /// Called at a tick: gives the slot back and returns the future that queues for one
    /// again (only while the machine is contended), then yields, so the runtime runs
    /// something else before the next slice.
    pub(crate) fn next_slice(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        drop(lock(&self.state.held).take());
        self.state.sliced.store(true, Ordering::Relaxed);
        if !self.governor.is_contended() {
            return Box::pin(tokio::task::yield_now());
        }
        let app = self.app.clone();
        let governor = self.governor.clone();
        let state = self.state.clone();
        Box::pin(async move {
            let permit = acquire(&app, &governor).await;
            *lock(&state.held) = permit;
            tokio::task::yield_now().await;
        })
    }
}

/// One of an app's CPU slots; if none is free, notes on `governor` that a guest was held back
/// ([`Governor::note_held_back`]) and waits for one.
async fn acquire(app: &Arc<Semaphore>, governor: &Governor) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = app.clone().try_acquire_owned() {
        return Some(permit);
    }
    governor.note_held_back();
    app.clone().acquire_owned().await.ok()
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
        let first = CpuSlot::new(&share);
        let second = CpuSlot::new(&share);
        first.first_slice().await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.first_slice()).await;
        assert!(waiting.is_err(), "one slot: the second waits");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.first_slice())
            .await
            .unwrap();
    }

    #[test]
    fn only_a_saturated_machine_with_two_active_apps_throttles_the_one_over_its_share() {
        let fair = FairShare::new(1, 10);
        let governor = fair.governor();
        let flood = fair.app("t", "flood");
        let victim = fair.app("t", "victim");
        let window = |flood_us: u64, victim_us: u64, busy: f64| {
            flood.add_cpu(Duration::from_micros(flood_us));
            if victim_us > 0 {
                victim.add_cpu(Duration::from_micros(victim_us));
            }
            governor.rebalance(busy);
        };
        // Alone on a saturated machine: the flood may use every core.
        window(30_000, 0, 1.0);
        assert!(!governor.is_contended() && !flood.waits_for_a_slot());
        // Another app is active: the flood takes 30 ms of guest CPU against the victim's 2 ms.
        window(30_000, 2_000, 1.0);
        assert!(governor.is_contended());
        assert!(flood.is_throttled() && flood.waits_for_a_slot());
        let report = governor.report();
        assert!(report.contended);
        let throttled: Vec<(&str, bool)> = report
            .apps
            .iter()
            .map(|a| (a.app.as_str(), a.throttled))
            .collect();
        assert_eq!(throttled, [("flood", true), ("victim", false)]);
        assert!(!victim.is_throttled() && !victim.waits_for_a_slot());
        // The victim idles between requests and is still owed its share.
        window(30_000, 0, 1.0);
        assert!(flood.waits_for_a_slot());
        // The machine has spare capacity: nobody waits, however uneven the use.
        window(30_000, 2_000, 0.5);
        assert!(!governor.is_contended() && !flood.waits_for_a_slot());
        // Saturated, but an even split: nobody is over its share.
        window(10_000, 9_000, 1.0);
        assert!(governor.is_contended() && !flood.is_throttled() && !victim.is_throttled());
    }

    #[tokio::test]
    async fn a_contended_machine_stays_contended_while_its_slots_hold_guests_back() {
        let fair = FairShare::new(1, 10);
        let governor = fair.governor();
        let flood = fair.app("t", "flood");
        let victim = fair.app("t", "victim");
        let window = |busy: f64| {
            flood.add_cpu(Duration::from_millis(30));
            victim.add_cpu(Duration::from_micros(500));
            governor.rebalance(busy);
        };
        window(1.0);
        assert!(governor.is_contended() && flood.is_throttled());
        // The slot holds one of the flood's guests back: the machine is only 60% busy because
        // of that, and stays contended.
        let running = CpuSlot::new(&flood);
        running.first_slice().await;
        let waiting = CpuSlot::new(&flood);
        let queued = tokio::time::timeout(Duration::from_millis(20), waiting.first_slice()).await;
        assert!(queued.is_err(), "one slot: the second guest waits");
        window(0.6);
        assert!(governor.is_contended() && flood.is_throttled());
        // A window in which nobody waited for a slot: below saturation, the slots let go.
        window(0.6);
        assert!(!governor.is_contended() && !flood.is_throttled());
        // Nor does waiting keep a mostly idle machine contended (guests waiting for slots
        // held by guests blocked on I/O).
        window(1.0);
        assert!(governor.is_contended());
        let _ = tokio::time::timeout(Duration::from_millis(20), waiting.first_slice()).await;
        window(HELD_BUSY / 2.0);
        assert!(!governor.is_contended());
        // Waiting alone does not make a machine contended that was not.
        drop(running);
        let (a, b) = (CpuSlot::new(&flood), CpuSlot::new(&flood));
        a.first_slice().await;
        let _ = tokio::time::timeout(Duration::from_millis(20), b.first_slice()).await;
        window(0.6);
        assert!(!governor.is_contended());
    }

    #[test]
    fn an_idle_app_stops_counting_and_comes_back_when_it_runs_again() {
        let fair = FairShare::new(1, 10);
        let governor = fair.governor();
        let flood = fair.app("t", "flood");
        let victim = fair.app("t", "victim");
        victim.add_cpu(Duration::from_micros(100));
        let windows = (ACTIVE_FOR.as_millis() / WINDOW.as_millis()) as usize + 2;
        for _ in 0..windows {
            flood.add_cpu(Duration::from_millis(30));
            governor.rebalance(1.0);
        }
        // The victim has been idle for longer than ACTIVE_FOR: the flood is alone again.
        assert!(!governor.is_contended() && !flood.is_throttled());
        assert_eq!(lock(&governor.active).len(), 1);
        victim.add_cpu(Duration::from_micros(100));
        flood.add_cpu(Duration::from_millis(30));
        governor.rebalance(1.0);
        assert!(governor.is_contended() && flood.is_throttled());
    }

    #[test]
    fn proc_stat_counts_stolen_time_as_busy_and_iowait_as_idle() {
        let stat = "cpu  100 5 20 800 50 1 2 22 0 0\ncpu0 50 2 10 400 25 0 1 11 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((150, 1000)));
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
        let before = CpuSample {
            at: Instant::now(),
            machine: Some((150, 1000)),
            process: Duration::ZERO,
        };
        let after = CpuSample {
            machine: Some((240, 1100)),
            ..CpuSample::take(Instant::now())
        };
        assert!((after.busy_since(&before, 2.0) - 0.9).abs() < 1e-9);
        // A real sample reads the machine, and the machine is between idle and saturated.
        let first = CpuSample::take(Instant::now());
        assert!(first.machine.is_some(), "/proc/stat unreadable");
        std::thread::sleep(Duration::from_millis(30));
        let busy = CpuSample::take(Instant::now()).busy_since(&first, 2.0);
        assert!((0.0..=1.0).contains(&busy), "{busy}");
    }

    #[test]
    fn the_ticker_runs_fast_while_contended_or_rejecting_and_guests_are_charged_its_length() {
        let fair = FairShare::new(1, 10);
        let (a, b) = (fair.app("t", "a"), fair.app("t", "b"));
        let slot = CpuSlot::new(&a);
        let (fast, slow) = (Duration::from_millis(1), Duration::from_millis(5));
        let governor = fair.governor();
        governor.rebalance(0.1);
        assert_eq!(governor.next_tick(fast, slow), slow);
        assert_eq!(slot.tick(), (5, false));
        // Two apps busy on a saturated machine: contended.
        a.add_cpu(Duration::from_millis(10));
        b.add_cpu(Duration::from_millis(10));
        governor.rebalance(1.0);
        assert!(governor.is_contended());
        assert_eq!(governor.next_tick(fast, slow), fast);
        assert_eq!(slot.tick(), (1, true));
        // An idle machine, but a request was turned away in the window: fast, no slots.
        governor.rebalance(0.1);
        assert_eq!(governor.next_tick(fast, slow), slow);
        a.note_rejection();
        governor.rebalance(0.1);
        assert!(!governor.is_contended());
        assert_eq!(governor.next_tick(fast, slow), fast);
        // The next window without rejections is slow again.
        governor.rebalance(0.1);
        assert_eq!(governor.next_tick(fast, slow), slow);
        // A contended tick longer than the uncontended one is used for both.
        let long = Duration::from_millis(10);
        assert_eq!(governor.next_tick(long, slow), long);
    }

    #[test]
    fn a_tick_yields_only_a_guest_that_has_run_a_slice_in_all() {
        let fair = FairShare::new(1, 10);
        let slot = CpuSlot::new(&fair.app("t", "a"));
        assert!(slot.ran_a_slice(), "never noted: counts as running");
        slot.polling_from(Instant::now(), Duration::ZERO);
        assert!(!slot.ran_a_slice(), "just started");
        std::thread::sleep(MIN_SLICE * 2);
        assert!(slot.ran_a_slice(), "well into its poll");
        slot.polling_from(Instant::now(), Duration::from_micros(100));
        assert!(
            !slot.ran_a_slice(),
            "a new poll of a guest that ran 100 µs before"
        );
        slot.polling_from(Instant::now(), Duration::from_millis(2));
        assert!(slot.ran_a_slice(), "a guest that ran 2 ms before this poll");
        // The rule holds only while apps contend.
        slot.polling_from(Instant::now(), Duration::ZERO);
        assert!(
            slot.may_yield(),
            "uncontended: a tick may always make it yield"
        );
        fair.governor().contended.store(true, Ordering::Relaxed);
        assert!(
            !slot.may_yield(),
            "contended: not before it has run a slice"
        );
    }

    #[tokio::test]
    async fn ticks_queue_for_a_slot_only_on_a_contended_machine() {
        let fair = FairShare::new(1, 10);
        let share = fair.app("t", "a");
        let holder = CpuSlot::new(&share);
        holder.first_slice().await;
        let other = CpuSlot::new(&share);
        // Not contended: the next slice only yields, though the only slot is taken.
        tokio::time::timeout(Duration::from_secs(5), other.next_slice())
            .await
            .unwrap();
        fair.governor().contended.store(true, Ordering::Relaxed);
        let waiting = tokio::time::timeout(Duration::from_millis(50), other.next_slice()).await;
        assert!(waiting.is_err(), "contended: it waits for the slot");
    }
}
