//! The scheduler behind one `[[trigger.cron]]`.
//!
//! **Once per tick, across restarts and redeploys.** Before a tick fires, it is *claimed*: the
//! last fired tick of the schedule is kept in the platform's key-value backend (store
//! `cron-ticks` of the internal tenant `_nimbus`, key `tenant/app/function/schedule@zone`) and
//! moved forward with compare-and-swap. Only the scheduler whose swap succeeds fires, so two
//! schedulers of the same trigger (old and new version during a deploy) or a restart can never
//! fire one tick twice. The claim is made before the invocation: a tick whose run is cut off by a
//! crash is not run again (at most once per tick; failures inside a run are retried, below).
//!
//! **Missed ticks** (the platform was down): `missed = "skip"` drops them; `"run-once"` (the
//! default) fires one catch-up run for the latest missed tick at start-up, with the extension
//! `catchup=true`, then follows the schedule. A schedule seen for the first time starts from now.
//!
//! **Failures**: a failed run is retried twice, after about 1 s and 2 s; then it is logged and
//! the schedule moves on. Runs may overlap if one takes longer than the interval.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nimbus_engine::{EventFunction, Invocation, TriggerKind};
use nimbus_kv::{KvBackend, StoreId};
use nimbus_manifest::cron::Schedule;
use nimbus_manifest::{CronTrigger, MissedTicks};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::retry_delay;
use crate::cloud;

/// Tenant of the platform's own state in the key-value backend (tenant names cannot start with
/// `_`, so no user store can reach it).
pub const STATE_TENANT: &str = "_nimbus";
/// Store of the last fired tick per schedule.
pub const TICKS_STORE: &str = "cron-ticks";
/// Runs per tick, including the first.
const RUNS_PER_TICK: u32 = 3;
/// Most missed ticks stepped through to find the latest one.
const MAX_CATCH_UP_STEPS: u32 = 1_000_000;

/// Everything one cron trigger needs.
pub(crate) struct CronJob {
    pub state: Arc<dyn KvBackend>,
    pub tenant: String,
    pub app: String,
    pub trigger: CronTrigger,
    pub schedule: Schedule,
    pub function: EventFunction,
}

impl CronJob {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}@{}",
            self.tenant,
            self.app,
            self.trigger.function,
            self.trigger.schedule,
            self.trigger.timezone
        )
    }

    fn store() -> StoreId {
        StoreId::new(STATE_TENANT, TICKS_STORE)
    }

    async fn last_tick(&self) -> Option<DateTime<Utc>> {
        match self.state.get(&Self::store(), &self.key()).await {
            Ok(Some(v)) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(key = %self.key(), error = %e, "reading the last cron tick failed");
                None
            }
        }
    }

    /// Claims `tick`: true if this scheduler may fire it (no one fired it or a later one).
    async fn claim(&self, tick: DateTime<Utc>) -> Result<bool, nimbus_kv::KvError> {
        let (store, key) = (Self::store(), self.key());
        let wanted = tick.timestamp_millis();
        loop {
            let current = self.state.get(&store, &key).await?;
            let last = current
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse::<i64>().ok());
            if last.is_some_and(|last| last >= wanted) {
                return Ok(false);
            }
            let new = bytes::Bytes::from(wanted.to_string());
            if self
                .state
                .compare_and_swap(&store, &key, current.as_deref(), new)
                .await?
            {
                return Ok(true);
            }
        }
    }

    /// Runs the schedule until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, tracker: TaskTracker) {
        let now = Utc::now();
        let mut after = now;
        if let Some(last) = self.last_tick().await {
            let mut latest_missed = None;
            let mut tick = last;
            for _ in 0..MAX_CATCH_UP_STEPS {
                match self.schedule.next_after(tick) {
                    Some(next) if next <= now => {
                        latest_missed = Some(next);
                        tick = next;
                    }
                    _ => break,
                }
            }
            if let Some(missed) = latest_missed {
                match self.trigger.missed {
                    MissedTicks::Skip => {
                        tracing::info!(app = %self.app, function = %self.trigger.function, latest_missed = %missed, "skipping cron ticks missed while down");
                    }
                    MissedTicks::RunOnce => self.fire(missed, true, &tracker).await,
                }
            }
        }
        loop {
            let Some(next) = self.schedule.next_after(after) else {
                tracing::warn!(app = %self.app, function = %self.trigger.function, "the cron schedule has no more ticks");
                return;
            };
            // Sleep in slices so a wall-clock jump is noticed within a minute.
            loop {
                let left = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(left.min(Duration::from_secs(60))) => {}
                }
            }
            self.fire(next, false, &tracker).await;
            after = next;
        }
    }

    /// Claims `tick` and, if this scheduler won it, runs the function for it in the background.
    async fn fire(self: &Arc<Self>, tick: DateTime<Utc>, catch_up: bool, tracker: &TaskTracker) {
        match self.claim(tick).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(app = %self.app, function = %self.trigger.function, %tick, error = %e, "could not claim a cron tick; not firing it");
                return;
            }
        }
        let this = self.clone();
        tracker.spawn(async move { this.run_tick(tick, catch_up).await });
    }

    async fn run_tick(&self, tick: DateTime<Utc>, catch_up: bool) {
        let function = &self.trigger.function;
        let event = match cloud::cron_event(
            &self.app,
            function,
            &self.trigger.schedule,
            tick,
            catch_up,
        ) {
            Ok(e) => cloud::to_engine(&e),
            Err(e) => {
                tracing::error!(app = %self.app, %function, error = %e, "could not build the cron event");
                return;
            }
        };
        let late_ms = (Utc::now() - tick).num_milliseconds();
        for run in 1..=RUNS_PER_TICK {
            let invocation =
                Invocation::new(uuid::Uuid::now_v7().to_string().into(), TriggerKind::Cron);
            let id = invocation.request_id.clone();
            let error = match self.function.handle(event.clone(), invocation).await {
                Ok(Ok(())) => {
                    tracing::debug!(app = %self.app, %function, %tick, late_ms, "cron tick handled");
                    return;
                }
                Ok(Err(message)) => format!("handler failed: {message}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(app = %self.app, %function, %tick, run, request_id = %id, %error, "cron run failed");
            if run < RUNS_PER_TICK {
                tokio::time::sleep(retry_delay(
                    run,
                    Duration::from_secs(1),
                    Duration::from_secs(2),
                ))
                .await;
            }
        }
        tracing::error!(app = %self.app, %function, %tick, "cron tick failed {RUNS_PER_TICK} times; giving up on it");
    }
}
