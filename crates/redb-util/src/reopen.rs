//! A redb database handle that recovers from failed writes.
//!
//! After an I/O error (a full disk, say) redb refuses every further operation on that handle
//! until the database is opened again; reopening also repairs an interrupted commit. The
//! append-only stores of Nimbus (usage records, function logs) must resume by themselves once
//! space is back, so their writes go through [`Reopening::write`]: a failed write marks the
//! handle broken, and the next write closes and reopens the file first.
//!
//! Reads go through [`Reopening::read`], which reopens a broken handle too: a store whose last
//! write failed, or whose reopen failed while the disk was still full, answers queries again as
//! soon as the file can be opened, without waiting for another write.
//!
//! Clones of the store share one `Reopening`. A query holding the old handle keeps the file
//! open a moment longer; the reopen then fails (the file is still locked) and is tried again at
//! the next read or write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redb::Database;

/// Opens a store's database file (and creates its tables).
pub type OpenFn<E> = fn(&Path) -> Result<Database, E>;

/// A database handle that is reopened after a failed write.
pub struct Reopening<E> {
    path: PathBuf,
    open: OpenFn<E>,
    /// `None` while a reopen failed.
    db: RwLock<Option<Arc<Database>>>,
    broken: AtomicBool,
}

impl<E> Reopening<E> {
    /// Opens `path` with `open`.
    pub fn open(path: &Path, open: OpenFn<E>) -> Result<Self, E> {
        let db = open(path)?;
        Ok(Self {
            path: path.to_owned(),
            open,
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
        })
    }

    /// The handle for a read, reopening the file first if a write failed since it was opened;
    /// `closed` is the error when there is no handle.
    pub fn read(&self, closed: impl FnOnce() -> E) -> Result<Arc<Database>, E> {
        if self.broken.load(Ordering::Relaxed) {
            self.reopen()?;
        }
        self.get().ok_or_else(closed)
    }

    /// The current handle as it is (broken or not); `None` while the file could not be
    /// reopened.
    pub fn get(&self) -> Option<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a write, reopening the file first if the last write failed; `closed` is the error
    /// when there is no handle. A failed `op` marks the handle broken.
    pub fn write<T>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, E>,
        closed: impl FnOnce() -> E,
    ) -> Result<T, E> {
        if self.broken.load(Ordering::Relaxed) {
            self.reopen()?;
        }
        let Some(db) = self.get() else {
            self.broken.store(true, Ordering::Relaxed);
            return Err(closed());
        };
        let result = op(&db);
        if result.is_err() {
            self.broken.store(true, Ordering::Relaxed);
        }
        result
    }

    fn reopen(&self) -> Result<(), E> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.broken.load(Ordering::Relaxed) {
            // Another caller reopened it while this one waited for the lock.
            return Ok(());
        }
        drop(slot.take());
        let db = (self.open)(&self.path)?;
        *slot = Some(Arc::new(db));
        self.broken.store(false, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), "store reopened after a write error");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn open(path: &Path) -> Result<Database, String> {
        Database::create(path).map_err(|e| e.to_string())
    }

    fn insert(db: &Database, k: u64) -> Result<(), String> {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(T)
            .map_err(|e| e.to_string())?
            .insert(k, k)
            .map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())
    }

    #[test]
    fn a_failed_write_reopens_before_the_next_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Reopening::open(&dir.path().join("x.redb"), open).unwrap();
        store.write(|db| insert(db, 1), || "closed".into()).unwrap();
        let first = store.get().unwrap();
        let failed: Result<(), String> =
            store.write(|_| Err("disk full".into()), || "closed".into());
        assert!(failed.is_err());
        // Still the old handle: nothing reopened yet.
        assert!(Arc::ptr_eq(&first, &store.get().unwrap()));
        drop(first);
        store.write(|db| insert(db, 2), || "closed".into()).unwrap();
        let db = store.get().unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        assert_eq!(table.len().unwrap(), 2);
    }

    /// Fails while set, as opening a file on a full disk does (the open writes).
    static OPEN_FAILS: AtomicBool = AtomicBool::new(false);

    fn flaky_open(path: &Path) -> Result<Database, String> {
        if OPEN_FAILS.load(Ordering::SeqCst) {
            return Err("No space left on device (os error 28)".into());
        }
        open(path)
    }

    #[test]
    fn reads_reopen_a_store_whose_reopen_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Reopening::open(&dir.path().join("x.redb"), flaky_open).unwrap();
        store.write(|db| insert(db, 1), || "closed".into()).unwrap();
        let _ = store.write(|_| Err::<(), _>("disk full".to_owned()), || "closed".into());
        OPEN_FAILS.store(true, Ordering::SeqCst);
        let err = store.read(|| "closed".to_owned()).unwrap_err();
        assert!(err.contains("No space left"), "{err}");
        assert!(store.get().is_none(), "the failed reopen left no handle");
        // Space is back; no write comes, yet the next query finds the data.
        OPEN_FAILS.store(false, Ordering::SeqCst);
        let db = store.read(|| "closed".to_owned()).unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(T).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn a_reader_holding_the_old_handle_delays_the_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Reopening::open(&dir.path().join("x.redb"), open).unwrap();
        let _ = store.write(|_| Err::<(), _>("disk full".to_owned()), || "closed".into());
        let reader = store.get();
        assert!(store.write(|db| insert(db, 1), || "closed".into()).is_err());
        drop(reader);
        store.write(|db| insert(db, 1), || "closed".into()).unwrap();
    }
}
