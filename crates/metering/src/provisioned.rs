//! Provisioned usage: the time a function version kept instances ready (`min_instances`),
//! billed whether they served or not, as Lambda bills provisioned concurrency.
//!
//! The engine reports each ready pool's time in spans (one a minute while it lives, and its
//! remainder when it goes); the store adds each span to the hourly rollups of the hours it
//! covers ([`ProvisionedUsage::by_hour`]), so hour and day reports split it exactly.

use std::sync::Arc;

use crate::rollup::HOUR_MS;

/// `instances` instances of `memory_mb` kept ready for one function version from
/// `from_unix_ms` until `until_unix_ms` (wall clock, ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedUsage {
    /// The tenant owning the app.
    pub tenant: Arc<str>,
    /// The app.
    pub app: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// Instances kept ready (the function's `min_instances`).
    pub instances: u32,
    /// Configured memory of each, in MB.
    pub memory_mb: u32,
    /// Start of the span, inclusive.
    pub from_unix_ms: u64,
    /// End of the span, exclusive.
    pub until_unix_ms: u64,
}

impl ProvisionedUsage {
    /// Instances × memory: the span's MB·ms per millisecond.
    fn mb(&self) -> u64 {
        u64::from(self.instances) * u64::from(self.memory_mb)
    }

    /// The span's MB·ms in all.
    pub fn mb_ms(&self) -> u64 {
        self.mb()
            .saturating_mul(self.until_unix_ms.saturating_sub(self.from_unix_ms))
    }

    /// The span's MB·ms in each hour it covers: `(hour start, MB·ms)`, earliest first.
    pub fn by_hour(&self) -> Vec<(u64, u64)> {
        let per_ms = self.mb();
        let mut out = Vec::new();
        let mut at = self.from_unix_ms;
        while at < self.until_unix_ms {
            let hour = at - at % HOUR_MS;
            let end = (hour + HOUR_MS).min(self.until_unix_ms);
            out.push((hour, per_ms.saturating_mul(end - at)));
            at = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: u64, until: u64) -> ProvisionedUsage {
        ProvisionedUsage {
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            instances: 2,
            memory_mb: 128,
            from_unix_ms: from,
            until_unix_ms: until,
        }
    }

    #[test]
    fn a_span_is_split_at_hour_boundaries() {
        // 10 s inside one hour: 2 × 128 MB × 10,000 ms.
        assert_eq!(span(1_000, 11_000).by_hour(), vec![(0, 2_560_000)]);
        // From 59 min to 2 h 1 min: the tail of hour 0, all of hour 1, the head of hour 2.
        let minute = 60_000;
        let parts = span(59 * minute, 2 * HOUR_MS + minute).by_hour();
        assert_eq!(
            parts,
            vec![
                (0, 256 * minute),
                (HOUR_MS, 256 * HOUR_MS),
                (2 * HOUR_MS, 256 * minute)
            ]
        );
        let total: u64 = parts.iter().map(|p| p.1).sum();
        assert_eq!(total, 256 * (HOUR_MS + 2 * minute));
        assert_eq!(span(59 * minute, 2 * HOUR_MS + minute).mb_ms(), total);
        // Empty and backwards spans cover nothing.
        assert!(span(5, 5).by_hour().is_empty());
        assert!(span(9, 5).by_hour().is_empty());
    }
}
