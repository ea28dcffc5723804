//! The stored form of a value in backends without native per-key TTL (embedded, NATS):
//! `[expires_at_ms: u64 LE][bytes]`, 0 meaning never. Readers treat an expired row as absent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Encodes a value with an optional time to live.
pub(crate) fn encode(value: &[u8], ttl: Option<Duration>) -> Vec<u8> {
    let expires = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
    let mut row = Vec::with_capacity(8 + value.len());
    row.extend_from_slice(&expires.to_le_bytes());
    row.extend_from_slice(value);
    row
}

/// The live value of a row at `now`, or `None` if it expired (or is malformed).
pub(crate) fn decode(row: &[u8], now: u64) -> Option<&[u8]> {
    let (head, value) = row.split_at_checked(8)?;
    let expires = u64::from_le_bytes(head.try_into().ok()?);
    (expires == 0 || expires > now).then_some(value)
}
