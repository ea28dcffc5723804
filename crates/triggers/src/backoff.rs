//! Retry delays: exponential backoff with jitter.

use std::time::Duration;

/// The delay before retrying after failed attempt number `attempt` (1 = the first delivery):
/// `first × 2^(attempt-1)`, capped at `max`, then drawn uniformly from its upper half ("equal
/// jitter"), so retries of messages that failed together spread out but never come sooner than
/// half the nominal delay.
pub fn retry_delay(attempt: u32, first: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let nominal = first.saturating_mul(1u32 << exponent.min(31)).min(max);
    let half = nominal / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let jitter = if spread == 0 {
        0
    } else {
        rand::random_range(0..=spread)
    };
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_caps() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..200 {
            let d1 = retry_delay(1, first, max);
            assert!((50..=100).contains(&d1.as_millis()), "{d1:?}");
            let d3 = retry_delay(3, first, max);
            assert!((200..=400).contains(&d3.as_millis()), "{d3:?}");
            let d10 = retry_delay(10, first, max);
            assert!((500..=1000).contains(&d10.as_millis()), "capped: {d10:?}");
            let huge = retry_delay(u32::MAX, first, max);
            assert!(huge <= max);
        }
    }
}
