//! Billing for instances kept ready (`min_instances`): a pool's time is reported to the usage
//! sink as [`ProvisionedUsage`] spans, one every [`SPAN`] while the pool lives and the rest
//! when it goes, so idle provisioned functions are billed as Lambda bills provisioned
//! concurrency (configured instances × memory × time, serving or not).
//!
//! Spans follow one another without gaps or overlaps: each starts where the last ended. Their
//! lengths come from the monotonic clock, so a wall-clock step moves where they fall in the
//! hourly rollups but never what they add up to.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use nimbus_metering::{ProvisionedUsage, UsageSink};

use crate::usage::{RecordNames, now_unix_ms};

/// How often a live pool's time is reported.
pub(crate) const SPAN: Duration = Duration::from_secs(60);

/// The billing of one pool: reports its time when told to and when dropped.
pub(crate) struct KeptBilling {
    sink: Arc<dyn UsageSink>,
    names: RecordNames,
    instances: u32,
    memory_mb: u32,
    /// Where the next span starts: wall clock (ms since the epoch) and the same instant on the
    /// monotonic clock.
    from: Mutex<(u64, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeptBilling {
    /// Starts billing `instances` instances of `memory_mb` from now, and (inside a tokio
    /// runtime) a task reporting a span `every` so often ([`SPAN`]) until the billing is
    /// dropped.
    pub(crate) fn start(
        sink: Arc<dyn UsageSink>,
        names: RecordNames,
        instances: u32,
        memory_mb: u32,
        every: Duration,
    ) -> Arc<Self> {
        let billing = Arc::new(Self {
            sink,
            names,
            instances,
            memory_mb,
            from: Mutex::new((now_unix_ms(), Instant::now())),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(report_every(every, Arc::downgrade(&billing)));
        }
        billing
    }

    /// Reports the time since the last span (if any whole millisecond passed).
    pub(crate) fn report(&self) {
        let mut from = lock(&self.from);
        let (from_unix_ms, from_instant) = *from;
        let elapsed_ms = from_instant.elapsed().as_millis() as u64;
        if elapsed_ms == 0 {
            return;
        }
        let until_unix_ms = from_unix_ms + elapsed_ms;
        self.sink.provisioned(ProvisionedUsage {
            tenant: self.names.tenant.clone(),
            app: self.names.app.clone(),
            function: self.names.function.clone(),
            instances: self.instances,
            memory_mb: self.memory_mb,
            from_unix_ms,
            until_unix_ms,
        });
        *from = (
            until_unix_ms,
            from_instant + Duration::from_millis(elapsed_ms),
        );
    }
}

impl Drop for KeptBilling {
    fn drop(&mut self) {
        self.report();
    }
}

async fn report_every(every: Duration, billing: Weak<KeptBilling>) {
    loop {
        tokio::time::sleep(every).await;
        let Some(billing) = billing.upgrade() else {
            return;
        };
        billing.report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_metering::UsageRecord;

    #[derive(Default)]
    struct Collect(Mutex<Vec<ProvisionedUsage>>);

    impl UsageSink for Collect {
        fn record(&self, _record: UsageRecord) {}

        fn provisioned(&self, usage: ProvisionedUsage) {
            lock(&self.0).push(usage);
        }
    }

    fn names() -> RecordNames {
        RecordNames {
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
        }
    }

    #[test]
    fn spans_follow_each_other_and_the_last_comes_at_drop() {
        let collect = Arc::new(Collect::default());
        let started = Instant::now();
        let billing = KeptBilling::start(collect.clone(), names(), 3, 256, SPAN);
        std::thread::sleep(Duration::from_millis(20));
        billing.report();
        std::thread::sleep(Duration::from_millis(30));
        drop(billing);
        let lived_ms = started.elapsed().as_millis() as u64;
        let spans = lock(&collect.0);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].until_unix_ms, spans[1].from_unix_ms, "no gap");
        let billed_ms = spans[1].until_unix_ms - spans[0].from_unix_ms;
        assert!(
            (50..=lived_ms).contains(&billed_ms),
            "billed {billed_ms} ms of {lived_ms}"
        );
        assert_eq!((spans[0].instances, spans[0].memory_mb), (3, 256));
        assert_eq!(&*spans[0].function, "api");
    }

    #[tokio::test]
    async fn a_live_pool_reports_a_span_every_interval_until_dropped() {
        let collect = Arc::new(Collect::default());
        let every = Duration::from_millis(10);
        let billing = KeptBilling::start(collect.clone(), names(), 1, 128, every);
        let started = Instant::now();
        while lock(&collect.0).len() < 3 {
            assert!(started.elapsed() < Duration::from_secs(10), "no spans");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(billing);
        let at_drop = lock(&collect.0).len();
        // The task ends with the billing: no span after the one of the drop.
        tokio::time::sleep(every * 5).await;
        assert_eq!(lock(&collect.0).len(), at_drop);
        let spans = lock(&collect.0);
        assert!(
            spans
                .windows(2)
                .all(|w| w[0].until_unix_ms == w[1].from_unix_ms)
        );
    }
}
