//! The billing math: a price table (Lambda's public x86 prices by default), GB-seconds as
//! Lambda computes them, and the monthly free tier.
//!
//! Usage is summed as integers ([`crate::Counters`]: requests and MB·ms), and money is computed
//! from the sums once, so a bill never depends on the order records were added in.

use serde::{Deserialize, Serialize};

/// MB·ms in one GB-second: Lambda counts memory in GB of 1,024 MB and time in seconds.
pub const MB_MS_PER_GB_SECOND: f64 = 1024.0 * 1000.0;

/// What usage costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// US dollars per million billed requests (Lambda x86: 0.20).
    #[serde(default = "PriceTable::default_per_million_requests")]
    pub per_million_requests_usd: f64,
    /// US dollars per GB-second (Lambda x86, first tier: 0.0000166667).
    #[serde(default = "PriceTable::default_per_gb_second")]
    pub per_gb_second_usd: f64,
    /// US dollars per GB-second of instances kept ready by `min_instances`, whether they
    /// serve or not (Lambda x86 provisioned concurrency: 0.0000041667). The free tier does not
    /// cover it (nor does Lambda's).
    #[serde(default = "PriceTable::default_per_provisioned_gb_second")]
    pub per_provisioned_gb_second_usd: f64,
    /// Requests free each calendar month (UTC), per tenant (Lambda: 1,000,000; default 0:
    /// no free tier).
    #[serde(default)]
    pub free_requests_per_month: u64,
    /// GB-seconds free each calendar month (UTC), per tenant (Lambda: 400,000; default 0).
    #[serde(default)]
    pub free_gb_seconds_per_month: f64,
}

impl PriceTable {
    /// Lambda's x86 price per million requests.
    pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
    /// Lambda's x86 price per GB-second (first pricing tier).
    pub const LAMBDA_PER_GB_SECOND: f64 = 0.000_016_666_7;
    /// Lambda's x86 price per GB-second of provisioned concurrency.
    pub const LAMBDA_PER_PROVISIONED_GB_SECOND: f64 = 0.000_004_166_7;

    fn default_per_million_requests() -> f64 {
        Self::LAMBDA_PER_MILLION_REQUESTS
    }

    fn default_per_gb_second() -> f64 {
        Self::LAMBDA_PER_GB_SECOND
    }

    fn default_per_provisioned_gb_second() -> f64 {
        Self::LAMBDA_PER_PROVISIONED_GB_SECOND
    }

    /// The cost of `requests` billed requests and `mb_ms` MB·ms, before any free tier.
    pub fn cost(&self, requests: u64, mb_ms: u64) -> f64 {
        requests as f64 * self.per_million_requests_usd / 1_000_000.0
            + gb_seconds(mb_ms) * self.per_gb_second_usd
    }

    /// The cost of `mb_ms` MB·ms of provisioned instances.
    pub fn provisioned_cost(&self, mb_ms: u64) -> f64 {
        gb_seconds(mb_ms) * self.per_provisioned_gb_second_usd
    }

    /// What the free tier takes off one calendar month's total of `requests` and `mb_ms`.
    pub fn free_tier_credit(&self, requests: u64, mb_ms: u64) -> f64 {
        let free_requests = requests.min(self.free_requests_per_month);
        let free_gbs = gb_seconds(mb_ms).min(self.free_gb_seconds_per_month.max(0.0));
        free_requests as f64 * self.per_million_requests_usd / 1_000_000.0
            + free_gbs * self.per_gb_second_usd
    }

    /// Checks the table makes sense (no negative or non-finite prices).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("per_million_requests_usd", self.per_million_requests_usd),
            ("per_gb_second_usd", self.per_gb_second_usd),
            (
                "per_provisioned_gb_second_usd",
                self.per_provisioned_gb_second_usd,
            ),
            ("free_gb_seconds_per_month", self.free_gb_seconds_per_month),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "{name} must be a non-negative number (got {value})"
                ));
            }
        }
        Ok(())
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            per_million_requests_usd: Self::LAMBDA_PER_MILLION_REQUESTS,
            per_gb_second_usd: Self::LAMBDA_PER_GB_SECOND,
            per_provisioned_gb_second_usd: Self::LAMBDA_PER_PROVISIONED_GB_SECOND,
            free_requests_per_month: 0,
            free_gb_seconds_per_month: 0.0,
        }
    }
}

/// MB·ms as GB-seconds.
pub fn gb_seconds(mb_ms: u64) -> f64 {
    mb_ms as f64 / MB_MS_PER_GB_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn lambda_examples() {
        let prices = PriceTable::default();
        // AWS's own worked example: 3,000,000 requests of 1 s at 512 MB in a month =
        // 1,500,000 GB-s → $25.00 of compute (at 0.0000166667) + $0.60 of requests.
        let mb_ms = 3_000_000 * 512 * 1000;
        assert!(close(gb_seconds(mb_ms), 1_500_000.0));
        let cost = prices.cost(3_000_000, mb_ms);
        assert!(close(cost, 1_500_000.0 * 0.000_016_666_7 + 0.60), "{cost}");
        // 128 MB for 1 ms is 0.125 ms·GB = 0.000125 GB-s.
        assert!(close(gb_seconds(128), 0.000_125));
        // Provisioned concurrency: 10 instances of 1 GB for a 30-day month = 25,920,000
        // GB-s → $108.00 at 0.0000041667 (AWS's pricing page rounds it the same way).
        let month_mb_ms = 10 * 1024 * 30 * 24 * 3_600_000;
        let provisioned = prices.provisioned_cost(month_mb_ms);
        assert!((provisioned - 25_920_000.0 * 0.000_004_166_7).abs() < 1e-6);
        assert!((provisioned - 108.0).abs() < 0.01, "{provisioned}");
    }

    #[test]
    fn the_free_tier_is_capped_by_usage() {
        let prices = PriceTable {
            free_requests_per_month: 1_000_000,
            free_gb_seconds_per_month: 400_000.0,
            ..PriceTable::default()
        };
        // Below the allowance: everything is free.
        let small = prices.cost(10, 10 * 128 * 100);
        assert!(close(prices.free_tier_credit(10, 10 * 128 * 100), small));
        // Above it: exactly the allowance is free.
        let mb_ms = 1_024_000 * 500_000; // 500,000 GB-s
        let credit = prices.free_tier_credit(2_000_000, mb_ms);
        assert!(
            close(credit, 0.20 + 400_000.0 * 0.000_016_666_7),
            "{credit}"
        );
    }

    #[test]
    fn prices_are_validated() {
        let bad = PriceTable {
            per_gb_second_usd: -1.0,
            ..PriceTable::default()
        };
        assert!(bad.validate().unwrap_err().contains("per_gb_second_usd"));
        assert!(PriceTable::default().validate().is_ok());
    }
}
