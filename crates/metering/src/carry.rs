//! Usage on its way to the hourly rollups without per-invocation records of its own:
//! provisioned time, and invocations whose records could not be stored (the meter's queue was
//! full, or their batch failed to be written).
//!
//! The bill is read from the rollups alone, so usage summed here keeps it exact even when the
//! raw records are gone: those only serve per-invocation queries. The sums are bounded by the
//! groups (hour × function) they touch, not by the records they hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::provisioned::ProvisionedUsage;
use crate::record::UsageRecord;
use crate::rollup::{Counters, HOUR_MS};

/// Groups an [`HourlySums`] holds at most before it refuses new ones: a full disk for four
/// weeks with 100 functions busy every hour is 67,200 (~20 MB).
pub const MAX_GROUPS: usize = 100_000;

/// An hourly rollup's key: `(hour start in ms since the epoch, tenant, app, function)`.
pub type GroupKey = (u64, Arc<str>, Arc<str>, Arc<str>);

/// Usage summed per hour and function, waiting for a batch to add it to the rollups.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HourlySums {
    groups: BTreeMap<GroupKey, Counters>,
    /// Invocations summed (their records are not in any batch).
    records: u64,
}

impl HourlySums {
    /// Adds one invocation. Refuses it (returns `false`) when its group is new and the sums
    /// already hold [`MAX_GROUPS`].
    pub fn add_record(&mut self, record: &UsageRecord) -> bool {
        let hour = record.start_unix_ms - record.start_unix_ms % HOUR_MS;
        let key = (
            hour,
            record.tenant.clone(),
            record.app.clone(),
            record.function.clone(),
        );
        let Some(counters) = self.group(key) else {
            return false;
        };
        counters.add(record);
        self.records += 1;
        true
    }

    /// Adds a span of provisioned time to the hours it covers. Refuses it (returns `false`)
    /// when it would need a new group past [`MAX_GROUPS`]; then nothing of it is added.
    pub fn add_span(&mut self, span: &ProvisionedUsage) -> bool {
        let hours = span.by_hour();
        let new = hours
            .iter()
            .filter(|(hour, _)| !self.groups.contains_key(&span_key(span, *hour)))
            .count();
        if self.groups.len() + new > MAX_GROUPS {
            return false;
        }
        for (hour, mb_ms) in hours {
            let counters = self.groups.entry(span_key(span, hour)).or_default();
            counters.provisioned_mb_ms = counters.provisioned_mb_ms.saturating_add(mb_ms);
        }
        true
    }

    /// Adds everything of `other` (sums taken for a batch that then failed), past the bound
    /// if need be: what was held once is never dropped here.
    pub fn merge(&mut self, other: HourlySums) {
        for (key, counters) in other.groups {
            self.groups.entry(key).or_default().merge(&counters);
        }
        self.records += other.records;
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Invocations summed.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Each group and its sums.
    pub fn groups(&self) -> impl Iterator<Item = (&GroupKey, &Counters)> {
        self.groups.iter()
    }

    fn group(&mut self, key: GroupKey) -> Option<&mut Counters> {
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains_key(&key) {
            return None;
        }
        Some(self.groups.entry(key).or_default())
    }
}

fn span_key(span: &ProvisionedUsage, hour: u64) -> GroupKey {
    (
        hour,
        span.tenant.clone(),
        span.app.clone(),
        span.function.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(function: &str, start_unix_ms: u64) -> UsageRecord {
        UsageRecord {
            app: "a".into(),
            function: function.into(),
            start_unix_ms,
            billed_ms: 2,
            ..crate::record::tests::sample()
        }
    }

    #[test]
    fn records_and_spans_sum_per_hour_and_function() {
        let mut sums = HourlySums::default();
        assert!(sums.add_record(&record("f", 10)));
        assert!(sums.add_record(&record("f", 20)));
        assert!(sums.add_record(&record("g", HOUR_MS + 5)));
        let span = ProvisionedUsage {
            tenant: "default".into(),
            app: "a".into(),
            function: "f".into(),
            instances: 2,
            memory_mb: 128,
            from_unix_ms: HOUR_MS - 1000,
            until_unix_ms: HOUR_MS + 1000,
        };
        assert!(sums.add_span(&span));
        assert_eq!(sums.records(), 3);
        let groups: Vec<_> = sums
            .groups()
            .map(|((hour, _, _, f), c)| {
                (
                    *hour,
                    f.to_string(),
                    c.invocations,
                    c.mb_ms,
                    c.provisioned_mb_ms,
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                (0, "f".into(), 2, 512, 256_000),
                (HOUR_MS, "f".into(), 0, 0, 256_000),
                (HOUR_MS, "g".into(), 1, 256, 0),
            ]
        );
    }

    #[test]
    fn new_groups_are_refused_past_the_bound_and_merging_keeps_everything() {
        let mut sums = HourlySums::default();
        for hour in 0..MAX_GROUPS as u64 {
            assert!(sums.add_record(&record("f", hour * HOUR_MS)));
        }
        // A known group still takes records; a new one is refused, whole.
        assert!(sums.add_record(&record("f", 0)));
        assert!(!sums.add_record(&record("g", 0)));
        let span = ProvisionedUsage {
            tenant: "default".into(),
            app: "a".into(),
            function: "g".into(),
            instances: 1,
            memory_mb: 128,
            from_unix_ms: 0,
            until_unix_ms: 1000,
        };
        assert!(!sums.add_span(&span));
        assert_eq!(sums.records(), MAX_GROUPS as u64 + 1);

        let mut other = HourlySums::default();
        assert!(other.add_record(&record("g", 0)));
        sums.merge(other);
        assert_eq!(sums.groups().count(), MAX_GROUPS + 1);
        assert_eq!(sums.records(), MAX_GROUPS as u64 + 2);
    }
}
