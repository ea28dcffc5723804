//! The stored form of a message's metadata (its body is stored beside it, not in here).

use serde::{Deserialize, Serialize};

use super::writer::backend;
use crate::{Message, QueueError};

/// A message's metadata row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    /// Everything but the body.
    pub message: Message,
    /// Unix ms from which it may be delivered.
    pub visible_at_ms: u64,
}

impl Record {
    pub fn encode(&self) -> Result<Vec<u8>, QueueError> {
        serde_json::to_vec(self).map_err(backend)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, QueueError> {
        serde_json::from_slice(bytes).map_err(|e| backend(format!("corrupt message record: {e}")))
    }
}
