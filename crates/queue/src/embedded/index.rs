//! The in-memory index of one queue: which messages exist, when each becomes visible, which
//! are leased and until when. Bodies and attributes stay on disk; an entry costs about 100 bytes,
//! and a queue holds at most [`crate::MAX_DEPTH`] of them.
//!
//! Leases live only here, not on disk: after a restart every message is visible again, which
//! is what at-least-once delivery needs (a delivery cut off by the restart is retried, without
//! counting as an attempt).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::Notify;

/// One message in the index.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Unix ms from which it may be delivered.
    pub visible_at: u64,
    /// Deliveries so far.
    pub attempts: u32,
    /// The current lease, if it is in flight.
    pub lease: Option<Lease>,
}

/// A consumer's hold on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    /// Matches the receipt handed out.
    pub token: u64,
    /// Unix ms when the lease runs out and the message is visible again.
    pub deadline: u64,
}

/// A message just leased.
#[derive(Debug, Clone, Copy)]
pub(super) struct Taken {
    pub seq: u64,
    pub token: u64,
    pub attempts: u32,
}

/// The index of one queue.
#[derive(Default)]
pub(super) struct QueueIndex {
    entries: HashMap<u64, Entry>,
    /// `(visible_at, seq)` of every entry not leased.
    visible: BTreeSet<(u64, u64)>,
    /// `(deadline, seq)` of every lease.
    leases: BTreeSet<(u64, u64)>,
    /// Sends accepted but not yet committed (they count toward the depth limit).
    reserved: usize,
    /// Woken when messages become visible.
    pub notify: Arc<Notify>,
}

impl QueueIndex {
    /// Messages held, counting sends in progress.
    pub fn depth(&self) -> usize {
        self.entries.len() + self.reserved
    }

    pub fn reserve(&mut self) {
        self.reserved += 1;
    }

    pub fn unreserve(&mut self) {
        self.reserved = self.reserved.saturating_sub(1);
    }

    /// Adds a committed message.
    pub fn insert(&mut self, seq: u64, visible_at: u64, attempts: u32) {
        self.entries.insert(
            seq,
            Entry {
                visible_at,
                attempts,
                lease: None,
            },
        );
        self.visible.insert((visible_at, seq));
    }

    /// Puts messages whose lease ran out before `now` back in line, visible at once.
    fn expire(&mut self, now: u64) {
        while let Some(&(deadline, seq)) = self.leases.first() {
            if deadline > now {
                break;
            }
            self.leases.pop_first();
            if let Some(entry) = self.entries.get_mut(&seq) {
                entry.lease = None;
                entry.visible_at = now;
                self.visible.insert((now, seq));
            }
        }
    }

    /// Leases up to `max` messages visible at `now` until `deadline`.
    pub fn take(
        &mut self,
        now: u64,
        max: usize,
        deadline: u64,
        mut next_token: impl FnMut() -> u64,
    ) -> Vec<Taken> {
        self.expire(now);
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(&(visible_at, seq)) = self.visible.first() else {
                break;
            };
            if visible_at > now {
                break;
            }
            self.visible.pop_first();
            let Some(entry) = self.entries.get_mut(&seq) else {
                continue;
            };
            let token = next_token();
            entry.attempts = entry.attempts.saturating_add(1);
            entry.lease = Some(Lease { token, deadline });
            self.leases.insert((deadline, seq));
            taken.push(Taken {
                seq,
                token,
                attempts: entry.attempts,
            });
        }
        taken
    }

    /// The earliest time something changes without anyone acting: a delayed message becomes
    /// visible or a lease runs out.
    pub fn next_wake(&self) -> Option<u64> {
        let visible = self.visible.first().map(|&(at, _)| at);
        let lease = self.leases.first().map(|&(at, _)| at);
        match (visible, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the lease `token` on `seq`, if it is still held; returns the entry as it was.
    pub fn release(&mut self, seq: u64, token: u64) -> Option<Entry> {
        let entry = *self.entries.get(&seq)?;
        let lease = entry.lease?;
        if lease.token != token {
            return None;
        }
        self.leases.remove(&(lease.deadline, seq));
        if let Some(e) = self.entries.get_mut(&seq) {
            e.lease = None;
        }
        Some(entry)
    }

    /// Removes a message (after [`QueueIndex::release`], or one that is not in flight).
    pub fn remove(&mut self, seq: u64) {
        if let Some(entry) = self.entries.remove(&seq) {
            self.visible.remove(&(entry.visible_at, seq));
            if let Some(lease) = entry.lease {
                self.leases.remove(&(lease.deadline, seq));
            }
        }
    }

    /// Makes a released message visible again at `visible_at`.
    pub fn requeue(&mut self, seq: u64, visible_at: u64) {
        if let Some(entry) = self.entries.get_mut(&seq) {
            entry.visible_at = visible_at;
            self.visible.insert((visible_at, seq));
        }
    }

    /// Up to `limit` messages not in flight, oldest-visible first.
    pub fn idle(&mut self, now: u64, limit: usize) -> Vec<(u64, Entry)> {
        self.expire(now);
        self.visible
            .iter()
            .take(limit)
            .filter_map(|&(_, seq)| self.entries.get(&seq).map(|e| (seq, *e)))
            .collect()
    }

    /// `(ready, delayed, in_flight)` at `now`.
    pub fn counts(&mut self, now: u64) -> (u64, u64, u64) {
        self.expire(now);
        let ready = self.visible.range(..(now + 1, 0)).count();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        (
            count(ready),
            count(self.visible.len() - ready),
            count(self.leases.len()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_and_tokens_must_match() {
        let mut index = QueueIndex::default();
        index.insert(1, 100, 0);
        index.insert(2, 200, 0);
        let mut token = 0;
        let mut next = || {
            token += 1;
            token
        };
        let taken = index.take(150, 10, 1000, &mut next);
        assert_eq!(taken.len(), 1, "only seq 1 is visible at 150");
        assert_eq!((taken[0].seq, taken[0].attempts), (1, 1));
        assert!(
            index.release(1, taken[0].token + 1).is_none(),
            "wrong token"
        );
        assert_eq!(index.next_wake(), Some(200));
        // After the lease deadline, seq 1 comes back with attempt 2, behind seq 2 (visible
        // since 200, while seq 1 is visible again only from its deadline).
        let again = index.take(1000, 10, 5000, &mut next);
        let seqs: Vec<_> = again.iter().map(|t| (t.seq, t.attempts)).collect();
        assert_eq!(seqs, vec![(2, 1), (1, 2)]);
        assert!(
            index.release(1, taken[0].token).is_none(),
            "the expired lease is void"
        );
        assert!(index.release(1, again[1].token).is_some());
        index.remove(1);
        assert_eq!(index.counts(1000), (0, 0, 1));
        assert_eq!(index.depth(), 1);
    }
}
