//! Access keys for the S3 API: issued by Nimbus (`nimbus keys create`), one tenant each.
//!
//! SigV4 needs the secret itself to verify a signature, so secrets are stored retrievable — but
//! sealed with the platform's master key (the one that encrypts app secrets), bound to their
//! key id: the object database alone reveals none of them. They are shown once, when created,
//! and never listed.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use nimbus_secrets::Sealer;

use crate::ObjectError;
use crate::error::store_err;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("access_keys");

/// A new key pair, as shown once to whoever created it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    /// The public id (`NMB` + 17 uppercase letters and digits, 20 in all, like AWS's).
    pub access_key_id: String,
    /// The secret (40 characters).
    pub secret_access_key: String,
    /// The tenant the key acts for.
    pub tenant: String,
}

/// What a listing shows of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The public id.
    pub access_key_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    /// Hex of the sealed secret (context `s3-key/<id>`).
    sealed_secret: String,
    tenant: String,
    created_at_ms: u64,
}

/// The access-key store.
#[derive(Clone)]
pub struct KeyStore {
    db: Arc<Database>,
    sealer: Sealer,
    /// Unsealed keys already looked up: every S3 request needs its key's secret and tenant.
    cache: Arc<std::sync::RwLock<HashMap<String, (String, String)>>>,
}

fn context(access_key_id: &str) -> String {
    format!("s3-key/{access_key_id}")
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore")
    }
}

fn random(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

impl KeyStore {
    /// A key store in `db` (the object store's database), sealing secrets with `sealer`.
    pub fn new(db: Arc<Database>, sealer: Sealer) -> Result<Self, ObjectError> {
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(KEYS).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(Self {
            db,
            sealer,
            cache: Arc::default(),
        })
    }

    /// Issues a key for `tenant`.
    pub fn create(&self, tenant: &str) -> Result<AccessKey, ObjectError> {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let key = AccessKey {
            access_key_id: format!("NMB{}", random(17, UPPER)),
            secret_access_key: random(40, SECRET),
            tenant: tenant.to_owned(),
        };
        let sealed = self
            .sealer
            .seal(
                &context(&key.access_key_id),
                key.secret_access_key.as_bytes(),
            )
            .map_err(store_err)?;
        let record = serde_json::to_vec(&KeyRecord {
            sealed_secret: hex::encode(sealed),
            tenant: tenant.to_owned(),
            created_at_ms: crate::now_ms(),
        })
        .map_err(store_err)?;
        let txn = self.db.begin_write().map_err(store_err)?;
        txn.open_table(KEYS)
            .map_err(store_err)?
            .insert(key.access_key_id.as_str(), record.as_slice())
            .map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        Ok(key)
    }

    /// The tenant's keys (ids only).
    pub fn list(&self, tenant: &str) -> Result<Vec<KeyInfo>, ObjectError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(KEYS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(store_err)? {
            let (id, v) = row.map_err(store_err)?;
            let record: KeyRecord = serde_json::from_slice(v.value()).map_err(store_err)?;
            if record.tenant == tenant {
                out.push(KeyInfo {
                    access_key_id: id.value().to_owned(),
                    created_at_ms: record.created_at_ms,
                });
            }
        }
        Ok(out)
    }

    /// Revokes a key; returns whether it existed (for `tenant`).
    pub fn delete(&self, tenant: &str, access_key_id: &str) -> Result<bool, ObjectError> {
        if self.lookup(access_key_id)?.is_none_or(|(_, t)| t != tenant) {
            return Ok(false);
        }
        let mut cache = self
            .cache
            .write()
            .map_err(|_| store_err("key cache lock poisoned"))?;
        let txn = self.db.begin_write().map_err(store_err)?;
        let existed = txn
            .open_table(KEYS)
            .map_err(store_err)?
            .remove(access_key_id)
            .map_err(store_err)?
            .is_some();
        txn.commit().map_err(store_err)?;
        cache.remove(access_key_id);
        Ok(existed)
    }

    /// The secret and tenant of a key.
    pub fn lookup(&self, access_key_id: &str) -> Result<Option<(String, String)>, ObjectError> {
        if let Some(hit) = self
            .cache
            .read()
            .ok()
            .and_then(|cache| cache.get(access_key_id).cloned())
        {
            return Ok(Some(hit));
        }
        // On a miss, read and fill under the write lock, which `delete` also holds while it
        // removes a key: a revoked key can never be put back into the cache.
        let mut cache = self
            .cache
            .write()
            .map_err(|_| store_err("key cache lock poisoned"))?;
        let found = self.lookup_stored(access_key_id)?;
        if let Some(found) = &found {
            cache.insert(access_key_id.to_owned(), found.clone());
        }
        Ok(found)
    }

    fn lookup_stored(&self, access_key_id: &str) -> Result<Option<(String, String)>, ObjectError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(KEYS).map_err(store_err)?;
        match table.get(access_key_id).map_err(store_err)? {
            Some(v) => {
                let record: KeyRecord = serde_json::from_slice(v.value()).map_err(store_err)?;
                let sealed = hex::decode(&record.sealed_secret).map_err(store_err)?;
                let secret = self
                    .sealer
                    .open(&context(access_key_id), &sealed)
                    .map_err(store_err)?;
                let secret = String::from_utf8(secret.to_vec()).map_err(store_err)?;
                Ok(Some((secret, record.tenant)))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_secrets::MasterKey;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&MasterKey::from_hex(&hex::encode([byte; 32])).unwrap())
    }

    #[test]
    fn secrets_are_sealed_at_rest_and_need_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects.redb");
        let key = {
            let db = Arc::new(Database::create(&path).unwrap());
            let keys = KeyStore::new(db, sealer(1)).unwrap();
            let key = keys.create("t").unwrap();
            assert_eq!(
                keys.lookup(&key.access_key_id).unwrap().unwrap(),
                (key.secret_access_key.clone(), "t".to_owned())
            );
            assert!(keys.list("other").unwrap().is_empty());
            assert!(!keys.delete("other", &key.access_key_id).unwrap());
            key
        };
        let bytes = std::fs::read(&path).unwrap();
        let secret = key.secret_access_key.as_bytes();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        // Another master key cannot open it.
        let db = Arc::new(Database::create(&path).unwrap());
        let keys = KeyStore::new(db, sealer(2)).unwrap();
        assert!(keys.lookup(&key.access_key_id).is_err());
    }
}
