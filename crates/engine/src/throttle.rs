//! A throttle for the operator's log: at most one line per interval for a kind of event,
//! counting the lines held back in between.
//!
//! A function that fails on every request (a trap in a loop, an app over its budget) would
//! otherwise write a warning per request to the server's stderr: thousands of lines a
//! second, each a write under stderr's lock on a worker thread. The function's own log
//! (`nimbus logs`) still gets every failure; the operator's log gets the first at once and
//! then one per interval, with how many it stands for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets one event through per interval.
#[derive(Debug)]
pub(crate) struct Throttle {
    origin: Instant,
    every_ms: u64,
    /// When the next event may pass, in ms since `origin`.
    next_ms: AtomicU64,
    /// Events held back since the last that passed.
    held: AtomicU64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            origin: Instant::now(),
            every_ms: every.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Whether this event passes; if it does, how many were held back since the last that
    /// did. Never waits.
    pub(crate) fn pass(&self) -> Option<u64> {
        let now = self.origin.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if due {
            Some(self.held.swap(0, Ordering::Relaxed))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_passes_then_one_per_interval_with_the_count_held_back() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.pass(), Some(0));
        assert_eq!((0..5).filter_map(|_| throttle.pass()).count(), 0);
        // Due again (as if the interval had passed): it reports the five held back.
        throttle.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(throttle.pass(), Some(5));
        assert_eq!(throttle.pass(), None);
    }

    #[test]
    fn concurrent_events_pass_once_per_interval() {
        let throttle = std::sync::Arc::new(Throttle::new(Duration::from_secs(3600)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || (0..1000).filter_map(|_| throttle.pass()).count())
            })
            .collect();
        let passed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(passed, 1);
        assert_eq!(throttle.held.load(Ordering::Relaxed), 3999);
    }
}
