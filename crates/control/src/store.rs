//! The durable state store: app records and platform metadata in one redb file under the data
//! dir. redb commits are atomic and fsynced, so a crash (even kill -9) leaves either the old or
//! the new state, never a torn one.
//!
//! Keys are `tenant/app` from the start, so multi-tenancy needs no data migration.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::ControlError;
use crate::types::AppRecord;

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The tenant everything belongs to until multi-tenancy arrives.
pub const DEFAULT_TENANT: &str = "default";

/// Durable control-plane state.
pub struct StateStore {
    db: Database,
}

fn key(tenant: &str, app: &str) -> String {
    format!("{tenant}/{app}")
}

impl StateStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ControlError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::SMALL_CACHE)?;
        let txn = db.begin_write()?;
        txn.open_table(APPS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Every app record of `tenant`, by name.
    pub fn list_apps(&self, tenant: &str) -> Result<Vec<AppRecord>, ControlError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(APPS)?;
        let prefix = format!("{tenant}/");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// One app record.
    pub fn get_app(&self, tenant: &str, app: &str) -> Result<Option<AppRecord>, ControlError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(APPS)?;
        let value = table.get(key(tenant, app).as_str())?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Writes an app record (durable when this returns).
    pub fn put_app(&self, record: &AppRecord) -> Result<(), ControlError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| ControlError::Store(format!("encode app record: {e}")))?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(APPS)?;
            table.insert(key(&record.tenant, &record.name).as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes an app record; returns whether it existed.
    pub fn delete_app(&self, tenant: &str, app: &str) -> Result<bool, ControlError> {
        let txn = self.db.begin_write()?;
        let existed = {
            let mut table = txn.open_table(APPS)?;
            table.remove(key(tenant, app).as_str())?.is_some()
        };
        txn.commit()?;
        Ok(existed)
    }

    /// A metadata value.
    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, ControlError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(name)?.map(|v| v.value().to_vec()))
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), ControlError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            table.insert(name, value)?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Result<AppRecord, ControlError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ControlError::Store(format!("decode app record: {e}")))
}
