//! [`RecordId`]: an invocation or request id as a usage record carries it.
//!
//! A record is made on the invocation's worker thread and dropped on the meter's writer thread.
//! Ids shared as `Arc<str>` with the invocation were then freed by the writer, thousands at a
//! time every batch: the allocator's pages for their size class emptied and refilled in bulk,
//! and the workers kept taking fresh pages (kernel page zeroing and allocator bitmaps, ~0.4 µs
//! per request, a quarter of what metering cost the minimal component — BENCHMARKS.md,
//! metering overhead). Ids up to [`RecordId::INLINE`] bytes — every id Nimbus makes — are
//! therefore copied into the record; longer ones stay shared.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An id stored inline when short enough (see the module docs). Serialized as a plain string,
/// so records read and write the same as when ids were `Arc<str>`.
#[derive(Clone)]
pub struct RecordId(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; RecordId::INLINE],
    },
    Shared(Arc<str>),
}

impl RecordId {
    /// The longest id kept inline, in bytes (a request id is 32, a UUID with hyphens 36).
    pub const INLINE: usize = 46;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Built only from a whole `&str` of `len` bytes (see `From<&str>`).
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
    }
}

impl From<&str> for RecordId {
    fn from(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Self(Repr::Inline { len, bytes })
            }
            _ => Self(Repr::Shared(s.into())),
        }
    }
}

impl From<&Arc<str>> for RecordId {
    fn from(s: &Arc<str>) -> Self {
        if s.len() <= Self::INLINE {
            Self::from(&**s)
        } else {
            Self(Repr::Shared(s.clone()))
        }
    }
}

impl From<String> for RecordId {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl std::ops::Deref for RecordId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RecordId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RecordId {}

impl PartialOrd for RecordId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RecordId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for RecordId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = RecordId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RecordId, E> {
                Ok(RecordId::from(s))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_inline_long_ones_shared_and_both_read_as_text() {
        let short = RecordId::from("0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4");
        assert!(matches!(short.0, Repr::Inline { len: 32, .. }));
        assert_eq!(&*short, "0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4");
        let edge = "x".repeat(RecordId::INLINE);
        assert!(matches!(
            RecordId::from(edge.as_str()).0,
            Repr::Inline { .. }
        ));
        let long: Arc<str> = "y".repeat(RecordId::INLINE + 1).into();
        let shared = RecordId::from(&long);
        assert!(matches!(&shared.0, Repr::Shared(s) if Arc::ptr_eq(s, &long)));
        assert_eq!(shared.as_str(), &*long);
        assert_eq!(RecordId::from(""), RecordId::from(String::new()));
        assert!(RecordId::from("a") < RecordId::from(&long));
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let long = "z".repeat(100);
        for id in ["req-1", long.as_str()] {
            let json = serde_json::to_string(&RecordId::from(id)).unwrap();
            assert_eq!(json, serde_json::to_string(id).unwrap());
            let back: RecordId = serde_json::from_str(&json).unwrap();
            assert_eq!(back.as_str(), id);
            let posted = postcard::to_allocvec(&RecordId::from(id)).unwrap();
            assert_eq!(posted, postcard::to_allocvec(id).unwrap());
            assert_eq!(
                postcard::from_bytes::<RecordId>(&posted).unwrap().as_str(),
                id
            );
        }
    }
}
