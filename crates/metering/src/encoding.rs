//! How a stored batch of records is encoded: a format byte, then the batch.
//!
//! Batches are written as postcard (compact, no field names: a record is ~70 bytes instead of
//! ~400 as JSON, and encoding it is a fraction of the writer thread's time — BENCHMARKS.md,
//! metering overhead). Postcard has no field names, so the record's fields are only ever
//! appended with a new [`crate::RECORD_VERSION`], never reordered, and enum variants only
//! appended; a format byte leaves room for another encoding later. Batches written as JSON
//! arrays (before postcard) still read.

use crate::error::MeteringError;
use crate::record::UsageRecord;

/// The format byte of a postcard batch.
const POSTCARD: u8 = b'P';

/// Encodes a batch for `usage_batches`.
#[cfg(test)]
pub(crate) fn encode(batch: &[UsageRecord]) -> Result<Vec<u8>, MeteringError> {
    encode_onto(batch, Vec::new())
}

/// Encodes a batch for `usage_batches` at the end of `out` (a buffer the caller reuses).
pub(crate) fn encode_onto(
    batch: &[UsageRecord],
    mut out: Vec<u8>,
) -> Result<Vec<u8>, MeteringError> {
    out.push(POSTCARD);
    postcard::to_extend(batch, out).map_err(MeteringError::corrupt)
}

/// Decodes a stored batch, in whichever format it was written.
pub(crate) fn decode(stored: &[u8]) -> Result<Vec<UsageRecord>, MeteringError> {
    match stored.split_first() {
        Some((&POSTCARD, body)) => postcard::from_bytes(body).map_err(MeteringError::corrupt),
        Some((b'[', _)) => serde_json::from_slice(stored).map_err(MeteringError::corrupt),
        _ => Err(MeteringError::corrupt("a usage batch of an unknown format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Outcome, RECORD_VERSION, TriggerKind};

    fn record(i: u64) -> UsageRecord {
        UsageRecord {
            v: RECORD_VERSION,
            invocation_id: format!("inv-{i}").into(),
            request_id: format!("req-{i}").into(),
            tenant: "default".into(),
            app: "shop".into(),
            function: "api".into(),
            version: 3,
            trigger: TriggerKind::Queue,
            start_unix_ms: 1_764_000_000_000 + i,
            duration_us: 1234,
            billed_ms: 2,
            memory_mb: 128,
            peak_memory_bytes: 1 << 20,
            cpu_us: 900,
            bytes_in: 10,
            bytes_out: 20,
            outcome: Outcome::Timeout,
            cold_start: i.is_multiple_of(2),
        }
    }

    #[test]
    fn postcard_and_json_batches_both_read() {
        let batch: Vec<UsageRecord> = (0..3).map(record).collect();
        let stored = encode(&batch).unwrap();
        assert_eq!(stored[0], POSTCARD);
        assert_eq!(decode(&stored).unwrap(), batch);
        let json = serde_json::to_vec(&batch).unwrap();
        assert!(
            stored.len() * 3 < json.len(),
            "{} vs {}",
            stored.len(),
            json.len()
        );
        assert_eq!(decode(&json).unwrap(), batch);
        assert!(decode(b"").is_err());
        assert!(decode(b"Xjunk").is_err());
        assert!(
            decode(&stored[..stored.len() - 3]).is_err(),
            "a cut batch is corrupt"
        );
    }
}
