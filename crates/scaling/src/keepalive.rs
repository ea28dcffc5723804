//! Keep-alive: how long an idle function keeps its compiled code in memory.
//!
//! A function's code is loaded on its first call and released once the function has been idle
//! long enough; the next call then pays an activation (the compiled artifact is mapped again
//! from the on-disk cache). Two policies decide "long enough":
//!
//! - [`KeepAlivePolicy::Fixed`]: keep the code for a fixed window after the last call ended
//!   (AWS Lambda keeps instances about 10 minutes, Azure Functions 20).
//! - [`KeepAlivePolicy::Hybrid`]: the hybrid histogram policy of Shahrad et al., "Serverless in
//!   the Wild" (USENIX ATC 2020). Each function keeps a histogram of its idle times (1-minute
//!   bins over 4 hours). When the histogram is representative, the code is released as soon as
//!   the function goes idle, loaded again shortly before the head of the distribution (its 5th
//!   percentile, minus a margin) and kept until its tail (99th percentile, plus the margin). When
//!   it is not (too few samples, or counts spread so evenly that no bin stands out) the fixed
//!   window applies. When most idle times fall beyond the histogram's range, keeping the code
//!   would only waste memory, so it is released at once; the paper forecasts those with ARIMA,
//!   which Nimbus does not do.
//!
//! The decision for one idle period is a [`Windows`]: load after `prewarm`, keep for
//! `keep_alive`. The engine polls [`Windows::warm_at`]; the replay integrates
//! [`Windows::warm_time`] and counts the calls that found the code released.

use std::time::Duration;

/// When the code of a function idle since some instant should be in memory: from `prewarm`
/// after it went idle, for `keep_alive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Idle time after which the code is (re)loaded; zero keeps it from the start.
    pub prewarm: Duration,
    /// How long the code is kept once loaded, waiting for a call.
    pub keep_alive: Duration,
}

impl Windows {
    /// Keep the code for `keep_alive` after the last call, load nothing ahead.
    pub fn fixed(keep_alive: Duration) -> Self {
        Self {
            prewarm: Duration::ZERO,
            keep_alive,
        }
    }

    /// Whether the code should be in memory after `idle` of idleness.
    pub fn warm_at(&self, idle: Duration) -> bool {
        idle >= self.prewarm && idle < self.prewarm.saturating_add(self.keep_alive)
    }

    /// How long the code sits in memory during an idle period of length `idle` that the next
    /// call ends: the overlap of `[prewarm, prewarm + keep_alive)` with `[0, idle)`.
    pub fn warm_time(&self, idle: Duration) -> Duration {
        idle.min(self.prewarm.saturating_add(self.keep_alive))
            .saturating_sub(self.prewarm)
    }
}

/// Which keep-alive policy a platform runs.
#[derive(Debug, Clone, PartialEq)]
pub enum KeepAlivePolicy {
    /// The same window for every function.
    Fixed(Duration),
    /// Windows learned per function from its idle-time histogram.
    Hybrid(HybridConfig),
}

impl Default for KeepAlivePolicy {
    fn default() -> Self {
        Self::Fixed(Duration::from_secs(600))
    }
}

impl std::str::FromStr for KeepAlivePolicy {
    type Err = String;

    /// `adaptive` (the hybrid policy with its defaults) or a fixed window: a whole number with
    /// a unit, `ms`, `s`, `m` or `h` (`10m`, `90s`, `0s`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "adaptive" {
            return Ok(Self::Hybrid(HybridConfig::default()));
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let bad =
            || format!("expected `adaptive` or a duration such as `10m`, `90s`, `0s` (got `{s}`)");
        let n: u64 = number.parse().map_err(|_| bad())?;
        let window = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        Ok(Self::Fixed(window))
    }
}

/// The parameters of [`KeepAlivePolicy::Hybrid`]. The defaults are the paper's except the
/// margin (5% instead of 10%) and the fallback (the fixed 10-minute window instead of the
/// histogram's 4-hour range): in the trace replay (BENCHMARKS.md) the paper's values keep
/// more memory than a fixed 10-minute window, these keep less, and both cut cold starts about
/// fivefold.
#[derive(Debug, Clone, PartialEq)]
pub struct HybridConfig {
    /// Width of a histogram bin.
    pub bin: Duration,
    /// Number of bins; `bin * bins` is the histogram's range.
    pub bins: usize,
    /// Percentile (0–100) of idle times before which the code is not kept.
    pub head_percentile: f64,
    /// Percentile (0–100) of idle times until which the code is kept.
    pub tail_percentile: f64,
    /// Safety margin: the head is moved earlier and the tail later by this fraction.
    pub margin: f64,
    /// Idle times needed in range before the histogram is trusted.
    pub min_samples: u32,
    /// Coefficient of variation of the bin counts below which the histogram is too flat to
    /// predict anything.
    pub min_bin_cv: f64,
    /// Share of idle times beyond the range above which the code is released at once.
    pub max_out_of_range: f64,
    /// The window used while the histogram is not representative.
    pub fallback: Duration,
    /// Once this many idle times are recorded, every count is halved, so the histogram follows
    /// a function whose pattern changes.
    pub max_samples: u32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            bin: Duration::from_secs(60),
            bins: 240,
            head_percentile: 5.0,
            tail_percentile: 99.0,
            margin: 0.05,
            min_samples: 10,
            min_bin_cv: 2.0,
            max_out_of_range: 0.5,
            fallback: Duration::from_secs(600),
            max_samples: 10_000,
        }
    }
}

/// One function's keep-alive state: its policy and, for the hybrid policy, its histogram.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    policy: KeepAlivePolicy,
    counts: Vec<u32>,
    in_range: u32,
    out_of_range: u32,
    windows: Windows,
}

impl KeepAlive {
    /// A function that has not been called yet.
    pub fn new(policy: &KeepAlivePolicy) -> Self {
        let (counts, windows) = match policy {
            KeepAlivePolicy::Fixed(window) => (Vec::new(), Windows::fixed(*window)),
            KeepAlivePolicy::Hybrid(config) => {
                (vec![0; config.bins.max(1)], Windows::fixed(config.fallback))
            }
        };
        Self {
            policy: policy.clone(),
            counts,
            in_range: 0,
            out_of_range: 0,
            windows,
        }
    }

    /// The windows for the idle period starting now.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// Records the length of an idle period that a call just ended, and updates the windows.
    pub fn observe_idle(&mut self, idle: Duration) {
        let KeepAlivePolicy::Hybrid(config) = &self.policy else {
            return;
        };
        let bin_ms = config.bin.as_millis().max(1);
        let index = usize::try_from(idle.as_millis() / bin_ms).unwrap_or(usize::MAX);
        match self.counts.get_mut(index) {
            Some(count) => {
                *count += 1;
                self.in_range += 1;
            }
            None => self.out_of_range += 1,
        }
        if self.in_range + self.out_of_range >= config.max_samples {
            for count in &mut self.counts {
                *count /= 2;
            }
            self.in_range = self.counts.iter().sum();
            self.out_of_range /= 2;
        }
        self.windows = hybrid_windows(config, &self.counts, self.in_range, self.out_of_range);
    }
}

fn hybrid_windows(
    config: &HybridConfig,
    counts: &[u32],
    in_range: u32,
    out_of_range: u32,
) -> Windows {
    let total = in_range + out_of_range;
    if total > 0 && f64::from(out_of_range) > config.max_out_of_range * f64::from(total) {
        // The next call most likely comes after the range: nothing to keep the code for.
        return Windows::fixed(Duration::ZERO);
    }
    if in_range < config.min_samples || bin_cv(counts, in_range) < config.min_bin_cv {
        return Windows::fixed(config.fallback);
    }
    let head = percentile_bin(counts, in_range, config.head_percentile);
    let tail = percentile_bin(counts, in_range, config.tail_percentile);
    let bin = config.bin.as_secs_f64();
    let prewarm = head as f64 * bin * (1.0 - config.margin);
    let end = (tail + 1) as f64 * bin * (1.0 + config.margin);
    Windows {
        prewarm: Duration::from_secs_f64(prewarm.max(0.0)),
        keep_alive: Duration::from_secs_f64((end - prewarm).max(0.0)),
    }
}

/// The coefficient of variation of the bin counts: high when a few bins hold most idle times.
fn bin_cv(counts: &[u32], total: u32) -> f64 {
    let n = counts.len() as f64;
    let mean = f64::from(total) / n;
    if mean == 0.0 {
        return 0.0;
    }
    let variance = counts
        .iter()
        .map(|&c| {
            let d = f64::from(c) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    variance.sqrt() / mean
}

/// The index of the bin holding the `percentile`-th idle time.
fn percentile_bin(counts: &[u32], total: u32, percentile: f64) -> usize {
    let rank = (percentile / 100.0 * f64::from(total)).ceil().max(1.0);
    let mut seen = 0.0;
    for (i, &count) in counts.iter().enumerate() {
        seen += f64::from(count);
        if seen >= rank {
            return i;
        }
    }
    counts.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn hybrid() -> KeepAlive {
        KeepAlive::new(&KeepAlivePolicy::Hybrid(HybridConfig::default()))
    }

    #[test]
    fn fixed_windows_keep_the_code_for_the_window_only() {
        let w = Windows::fixed(10 * MIN);
        assert!(w.warm_at(Duration::ZERO));
        assert!(w.warm_at(9 * MIN));
        assert!(!w.warm_at(10 * MIN));
        assert_eq!(w.warm_time(3 * MIN), 3 * MIN);
        assert_eq!(w.warm_time(60 * MIN), 10 * MIN);
        let never = Windows::fixed(Duration::ZERO);
        assert!(!never.warm_at(Duration::ZERO));
        assert_eq!(never.warm_time(MIN), Duration::ZERO);
    }

    #[test]
    fn prewarmed_windows_release_at_once_and_load_before_the_next_call() {
        let w = Windows {
            prewarm: 27 * MIN,
            keep_alive: 6 * MIN,
        };
        assert!(!w.warm_at(Duration::ZERO));
        assert!(!w.warm_at(26 * MIN));
        assert!(w.warm_at(30 * MIN));
        assert!(!w.warm_at(33 * MIN));
        assert_eq!(w.warm_time(20 * MIN), Duration::ZERO);
        assert_eq!(w.warm_time(30 * MIN), 3 * MIN);
        assert_eq!(w.warm_time(90 * MIN), 6 * MIN);
    }

    #[test]
    fn policies_parse_from_flags() {
        assert_eq!("10m".parse(), Ok(KeepAlivePolicy::Fixed(10 * MIN)));
        assert_eq!("0s".parse(), Ok(KeepAlivePolicy::Fixed(Duration::ZERO)));
        assert_eq!(
            "250ms".parse(),
            Ok(KeepAlivePolicy::Fixed(Duration::from_millis(250)))
        );
        assert_eq!("2h".parse(), Ok(KeepAlivePolicy::Fixed(120 * MIN)));
        assert_eq!(
            "adaptive".parse(),
            Ok(KeepAlivePolicy::Hybrid(HybridConfig::default()))
        );
        for bad in ["", "10", "m", "-1s", "1.5m", "10 min", "forever"] {
            let err = bad.parse::<KeepAlivePolicy>().unwrap_err();
            assert!(err.contains("expected `adaptive`"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_fixed_policy_ignores_history() {
        let mut k = KeepAlive::new(&KeepAlivePolicy::Fixed(20 * MIN));
        for _ in 0..100 {
            k.observe_idle(30 * MIN);
        }
        assert_eq!(k.windows(), Windows::fixed(20 * MIN));
    }

    #[test]
    fn a_periodic_function_is_prewarmed_around_its_period() {
        let mut k = hybrid();
        for _ in 0..9 {
            k.observe_idle(30 * MIN + Duration::from_secs(5));
        }
        // Nine samples: not yet trusted.
        assert_eq!(k.windows(), Windows::fixed(10 * MIN));
        k.observe_idle(30 * MIN + Duration::from_secs(5));
        let w = k.windows();
        // Head and tail are bin 30 ([30, 31) minutes): load at 28.5 min, keep until 32.55 min.
        assert!(
            (w.prewarm.as_secs_f64() - 30.0 * 60.0 * 0.95).abs() < 1e-6,
            "{w:?}"
        );
        let end = (w.prewarm + w.keep_alive).as_secs_f64();
        assert!((end - 31.0 * 60.0 * 1.05).abs() < 1e-6, "{w:?}");
        assert!(w.warm_at(30 * MIN), "{w:?}");
        assert!(!w.warm_at(MIN), "{w:?}");
    }

    #[test]
    fn a_busy_function_is_kept_about_a_minute() {
        let mut k = hybrid();
        for i in 0..1000 {
            k.observe_idle(Duration::from_millis(50 + i % 200));
        }
        let w = k.windows();
        assert_eq!(w.prewarm, Duration::ZERO);
        assert!((w.keep_alive.as_secs_f64() - 63.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn a_flat_histogram_falls_back_to_the_fixed_window() {
        let mut k = hybrid();
        for i in 0..2400u64 {
            k.observe_idle(Duration::from_secs(30 + (i % 240) * 60));
        }
        assert_eq!(k.windows(), Windows::fixed(10 * MIN));
    }

    #[test]
    fn mostly_out_of_range_idle_times_release_the_code_at_once() {
        let mut k = hybrid();
        for _ in 0..20 {
            k.observe_idle(6 * 60 * MIN);
        }
        for _ in 0..5 {
            k.observe_idle(2 * MIN);
        }
        assert_eq!(k.windows(), Windows::fixed(Duration::ZERO));
    }

    #[test]
    fn the_histogram_ages_so_a_changed_pattern_takes_over() {
        let mut k = hybrid();
        for _ in 0..9_000 {
            k.observe_idle(90 * MIN);
        }
        // The function now runs every two minutes; halving after every 10,000 samples shrinks
        // the old pattern below the tail percentile.
        for _ in 0..60_000 {
            k.observe_idle(2 * MIN + Duration::from_secs(1));
        }
        let w = k.windows();
        assert!(w.warm_at(2 * MIN + Duration::from_secs(1)), "{w:?}");
        assert!(!w.warm_at(80 * MIN), "{w:?}");
    }
}
