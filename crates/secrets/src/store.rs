//! The secret store: sealed values in redb, an in-memory snapshot of the opened ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::seal::Sealer;
use crate::{MAX_SECRET_BYTES, MasterKey, SecretError, check_name};

/// Row: `tenant/app/name` → `[format = 1][updated_at_ms: u64 LE][sealed value]` (see
/// [`Sealer`]), the full name as associated data.
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const FORMAT: u8 = 1;
/// Format byte and update time, before the sealed value.
const HEADER: usize = 1 + 8;

/// A decrypted secret value. Zeroed on drop; `Debug` prints `***`.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The plaintext.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a listing shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
    /// When it was last set, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

type Snapshot = BTreeMap<String, Arc<Secret>>;

/// Secrets of every app, sealed on disk.
pub struct SecretStore {
    db: Database,
    sealer: Sealer,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises writers so the snapshot follows the database's order of changes.
    write: Mutex<()>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("secrets", &self.snapshot.load().len())
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> SecretError {
    SecretError::Store(e.to_string())
}

fn full_name(tenant: &str, app: &str, name: &str) -> String {
    format!("{tenant}/{app}/{name}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SecretStore {
    /// Opens (creating) the store at `path` and decrypts every secret with `key`. Fails if any
    /// secret does not decrypt (wrong key), naming it.
    pub fn open(path: &Path, key: &MasterKey) -> Result<Self, SecretError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::SMALL_CACHE).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(SECRETS).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        let sealer = Sealer::new(key);
        let mut snapshot = Snapshot::new();
        {
            let txn = db.begin_read().map_err(store_err)?;
            let table = txn.open_table(SECRETS).map_err(store_err)?;
            for row in table.iter().map_err(store_err)? {
                let (name, sealed) = row.map_err(store_err)?;
                let name = name.value().to_owned();
                let plain = open_sealed(&sealer, &name, sealed.value())?;
                snapshot.insert(name, Arc::new(plain));
            }
        }
        Ok(Self {
            db,
            sealer,
            snapshot: ArcSwap::from_pointee(snapshot),
            write: Mutex::new(()),
        })
    }

    /// Sets secret `name` of `app` (replacing any previous value).
    pub fn set(&self, tenant: &str, app: &str, name: &str, value: &str) -> Result<(), SecretError> {
        check_name(name).map_err(SecretError::InvalidName)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::InvalidValue(format!(
                "secret values are at most {MAX_SECRET_BYTES} bytes (got {})",
                value.len()
            )));
        }
        let full = full_name(tenant, app, name);
        let sealed = seal(&self.sealer, &full, value)?;
        let _guard = self
            .write
            .lock()
            .map_err(|_| store_err("writer lock poisoned"))?;
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut table = txn.open_table(SECRETS).map_err(store_err)?;
            table
                .insert(full.as_str(), sealed.as_slice())
                .map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let secret = Arc::new(Secret(Zeroizing::new(value.to_owned())));
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.insert(full.clone(), secret.clone());
            next
        });
        Ok(())
    }

    /// Removes secret `name` of `app`; returns whether it existed.
    pub fn remove(&self, tenant: &str, app: &str, name: &str) -> Result<bool, SecretError> {
        let full = full_name(tenant, app, name);
        let _guard = self
            .write
            .lock()
            .map_err(|_| store_err("writer lock poisoned"))?;
        let txn = self.db.begin_write().map_err(store_err)?;
        let existed = {
            let mut table = txn.open_table(SECRETS).map_err(store_err)?;
            table.remove(full.as_str()).map_err(store_err)?.is_some()
        };
        txn.commit().map_err(store_err)?;
        self.snapshot.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.remove(&full);
            next
        });
        Ok(existed)
    }

    /// Names and update times of `app`'s secrets, by name.
    pub fn list(&self, tenant: &str, app: &str) -> Result<Vec<SecretInfo>, SecretError> {
        let prefix = full_name(tenant, app, "");
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(SECRETS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in table.range::<&str>(prefix.as_str()..).map_err(store_err)? {
            let (name, sealed) = row.map_err(store_err)?;
            let Some(short) = name.value().strip_prefix(&prefix) else {
                break;
            };
            let updated_at_ms = sealed
                .value()
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            out.push(SecretInfo {
                name: short.to_owned(),
                updated_at_ms,
            });
        }
        Ok(out)
    }

    /// The current value of secret `name` of `app`, from memory.
    pub fn resolve(&self, tenant: &str, app: &str, name: &str) -> Option<Arc<Secret>> {
        self.snapshot
            .load()
            .get(&full_name(tenant, app, name))
            .cloned()
    }

    /// Whether `app` has secret `name`.
    pub fn contains(&self, tenant: &str, app: &str, name: &str) -> bool {
        self.resolve(tenant, app, name).is_some()
    }
}

fn seal(sealer: &Sealer, full: &str, value: &str) -> Result<Vec<u8>, SecretError> {
    let sealed = sealer.seal(full, value.as_bytes())?;
    let mut row = Vec::with_capacity(HEADER + sealed.len());
    row.push(FORMAT);
    row.extend_from_slice(&now_ms().to_le_bytes());
    row.extend_from_slice(&sealed);
    Ok(row)
}

fn open_sealed(sealer: &Sealer, full: &str, row: &[u8]) -> Result<Secret, SecretError> {
    if row.len() < HEADER || row[0] != FORMAT {
        return Err(SecretError::Decrypt(full.to_owned()));
    }
    let plain = sealer.open(full, &row[9..])?;
    let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Decrypt(full.to_owned()))?;
    Ok(Secret(Zeroizing::new(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_hex(&hex::encode([byte; 32])).unwrap()
    }

    #[test]
    fn set_resolve_list_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.redb");
        let store = SecretStore::open(&path, &key(1)).unwrap();
        store.set("t", "shop", "stripe_key", "sk_live_123").unwrap();
        store.set("t", "shop", "db_password", "hunter2").unwrap();
        store.set("t", "other", "stripe_key", "sk_other").unwrap();
        assert_eq!(
            store.resolve("t", "shop", "stripe_key").unwrap().expose(),
            "sk_live_123"
        );
        let names: Vec<String> = store
            .list("t", "shop")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["db_password", "stripe_key"]);
        assert!(store.remove("t", "shop", "db_password").unwrap());
        assert!(!store.remove("t", "shop", "db_password").unwrap());
        drop(store);

        let store = SecretStore::open(&path, &key(1)).unwrap();
        assert_eq!(
            store.resolve("t", "shop", "stripe_key").unwrap().expose(),
            "sk_live_123"
        );
        assert!(store.resolve("t", "shop", "db_password").is_none());
        assert_eq!(
            format!("{:?}", store.resolve("t", "other", "stripe_key").unwrap()),
            "***"
        );
    }

    #[test]
    fn values_are_not_on_disk_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.redb");
        let store = SecretStore::open(&path, &key(1)).unwrap();
        store
            .set("t", "a", "token", "plaintext-canary-4711")
            .unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let needle = b"plaintext-canary-4711";
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn the_wrong_key_is_refused_naming_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.redb");
        SecretStore::open(&path, &key(1))
            .unwrap()
            .set("t", "a", "token", "value-canary-9")
            .unwrap();
        let err = SecretStore::open(&path, &key(2)).unwrap_err();
        assert!(
            matches!(err, SecretError::Decrypt(ref n) if n == "t/a/token"),
            "{err}"
        );
        assert!(!err.to_string().contains("value-canary-9"), "{err}");
    }

    #[test]
    fn a_sealed_value_moved_to_another_name_does_not_open() {
        let sealer = Sealer::new(&key(1));
        let sealed = seal(&sealer, "t/a/one", "value").unwrap();
        assert!(open_sealed(&sealer, "t/a/one", &sealed).is_ok());
        assert!(open_sealed(&sealer, "t/a/two", &sealed).is_err());
    }

    #[test]
    fn bad_names_and_oversized_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(&dir.path().join("s.redb"), &key(1)).unwrap();
        for bad in ["", "Upper", "1st", "with-dash", "sp ace"] {
            assert!(matches!(
                store.set("t", "a", bad, "v"),
                Err(SecretError::InvalidName(_))
            ));
        }
        let big = "x".repeat(MAX_SECRET_BYTES + 1);
        assert!(matches!(
            store.set("t", "a", "big", &big),
            Err(SecretError::InvalidValue(_))
        ));
    }
}
