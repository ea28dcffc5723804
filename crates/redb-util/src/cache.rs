//! How much memory each embedded store's redb cache may hold.
//!
//! redb's default is 1 GiB per database, and a committed page stays in its read cache until
//! the cache is full. For an append-only store that means the process grows by every byte it
//! writes — about 50 bytes per metered invocation, so ~1 MiB a second for a function serving
//! 20k requests a second — until 900 MiB per store, and every page it writes is a fresh
//! allocation the kernel must zero (19% of the usage writer's CPU; BENCHMARKS.md,
//! metering). With a bounded cache, pages are evicted and their memory reused.
//!
//! Each store picks the size that fits how it is read:

use std::path::Path;

use redb::{Builder, Database, DatabaseError};

/// Append-only stores read back rarely (usage records, function logs: a query, `nimbus
/// logs`): enough for the trees' upper pages and the recent tail.
pub const APPEND_ONLY_CACHE: usize = 16 << 20;

/// Stores read on the hot path of invocations (key-value data, queue messages, object
/// metadata): their working set stays in memory, up to this much per store.
pub const HOT_READ_CACHE: usize = 64 << 20;

/// Small stores read once at start-up or on control-API calls (apps, secrets).
pub const SMALL_CACHE: usize = 4 << 20;

/// Opens (creating if needed) the database at `path` with a cache of at most `cache_bytes`
/// (redb keeps a tenth of it for pages written by the open transaction).
pub fn create(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Database, DatabaseError> {
    Builder::new().set_cache_size(cache_bytes).create(path)
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    /// Resident memory of this process, from `/proc/self/statm` (pages of 4 KiB).
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4096
    }

    /// Writes 128 MiB through a 1 MiB cache: the process grows by far less than what was
    /// written (67 MiB with redb's default cache, 2 MiB with this one), and eviction loses
    /// nothing.
    #[test]
    fn writing_past_the_cache_does_not_grow_the_process_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = create(dir.path().join("db.redb"), 1 << 20).unwrap();
        let value = vec![7u8; 4000];
        let before = rss_bytes();
        for batch in 0..128u64 {
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(T).unwrap();
                for i in 0..256 {
                    table.insert(batch * 256 + i, value.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let grown = rss_bytes().saturating_sub(before);
        assert!(
            grown < 32 << 20,
            "the process grew by {} MiB writing 128 MiB through a 1 MiB cache",
            grown >> 20
        );
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        for k in 0..128 * 256 {
            assert_eq!(
                table.get(k).unwrap().unwrap().value(),
                value.as_slice(),
                "key {k}"
            );
        }
    }
}
