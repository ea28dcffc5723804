//! `wasi:keyvalue@0.2.0-draft2` for guests (store, atomics, batch — the version Spin 3 and
//! wasmCloud components import), on top of a [`KvBackend`].
//!
//! Capabilities: `store.open(name)` succeeds only for the stores the function declares in
//! `key_value_stores`; anything else is `access-denied`, whether or not the store exists.
//! Every store belongs to the function's tenant.
//!
//! CAS follows the interface: `cas.new` reads the current value, `swap` writes only if the
//! value is still that one (an exact compare-and-swap in the backend) and otherwise hands back
//! a fresh `cas` holding the value it found, ready for the next attempt.

use std::sync::Arc;

use bytes::Bytes;
use nimbus_kv::{KvBackend, KvError, StoreId};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::host::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Keys returned by one `list-keys` call.
const LIST_PAGE: usize = 1000;

/// An open store, as the guest holds it.
pub struct Bucket {
    id: StoreId,
}

/// A compare-and-swap handle: the key and the value it was read with.
pub struct Cas {
    id: StoreId,
    key: String,
    current: Option<Bytes>,
}

/// The key-value capability of one invocation: the backend and which stores it may open.
#[derive(Clone, Default)]
pub struct KvCtx {
    backend: Option<Arc<dyn KvBackend>>,
    tenant: Arc<str>,
    allowed: Arc<[String]>,
}

impl KvCtx {
    /// Access to `allowed` stores of `tenant` on `backend` (`None`: no key-value service, so
    /// every open fails with `no-such-store`).
    pub fn new(
        backend: Option<Arc<dyn KvBackend>>,
        tenant: Arc<str>,
        allowed: Arc<[String]>,
    ) -> Self {
        Self {
            backend,
            tenant,
            allowed,
        }
    }
}

/// What the generated host traits are implemented on.
pub struct KvView<'a> {
    ctx: &'a KvCtx,
    table: &'a mut ResourceTable,
}

struct WasiKeyValue;

impl HasData for WasiKeyValue {
    type Data<'a> = KvView<'a>;
}

fn view(state: &mut HostState) -> KvView<'_> {
    KvView {
        ctx: &state.kv,
        table: &mut state.table,
    }
}

/// Adds the three interfaces to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    store::add_to_linker::<HostState, WasiKeyValue>(linker, view)?;
    atomics::add_to_linker::<HostState, WasiKeyValue>(linker, view)?;
    batch::add_to_linker::<HostState, WasiKeyValue>(linker, view)?;
    Ok(())
}

/// `?` for guest-visible errors: returns `Ok(Err(error))` from a host function.
macro_rules! guest_try {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        }
    };
}

fn to_wit(err: KvError) -> store::Error {
    if let KvError::Backend(message) = &err {
        tracing::warn!(target: "nimbus::kv", error = %message, "key-value backend error");
    }
    store::Error::Other(err.to_string())
}

impl KvView<'_> {
    fn backend(&self) -> Result<&Arc<dyn KvBackend>, store::Error> {
        self.ctx.backend.as_ref().ok_or(store::Error::NoSuchStore)
    }

    fn store_of(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<StoreId> {
        Ok(self.table.get(bucket)?.id.clone())
    }
}

impl store::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if self.ctx.backend.is_none() {
            return Ok(Err(store::Error::NoSuchStore));
        }
        if !self.ctx.allowed.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        let id = StoreId::new(&self.ctx.tenant, &identifier);
        Ok(Ok(self.table.push(Bucket { id })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv
            .get(&id, &key)
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(to_wit))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv
            .set(&id, &key, Bytes::from(value), None)
            .await
            .map_err(to_wit))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv.delete(&id, &key).await.map(drop).map_err(to_wit))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv.exists(&id, &key).await.map_err(to_wit))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv
            .list_keys(&id, "", cursor.as_deref(), LIST_PAGE)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(to_wit))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        Ok(kv.increment(&id, &key, delta).await.map_err(to_wit))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { id, key, current } = self.table.delete(cas)?;
        let kv = match self.backend() {
            Ok(kv) => kv.clone(),
            Err(e) => return Ok(Err(atomics::CasError::StoreError(e))),
        };
        match kv
            .compare_and_swap(&id, &key, current.as_deref(), Bytes::from(value))
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Someone else wrote first: hand back a handle on what is there now.
                let current = match kv.get(&id, &key).await {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(to_wit(e)))),
                };
                let fresh = self.table.push(Cas { id, key, current })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(to_wit(e)))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        let current = match kv.get(&id, &key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(to_wit(e))),
        };
        Ok(Ok(self.table.push(Cas { id, key, current })?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self
            .table
            .get(&cas)?
            .current
            .as_ref()
            .map(|b| b.to_vec())))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match kv.get(&id, &key).await {
                Ok(value) => out.push(value.map(|v| (key, v.to_vec()))),
                Err(e) => return Ok(Err(to_wit(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        // Check every pair first, so a bad one fails the batch before anything is written.
        for (key, value) in &key_values {
            if let Err(e) = nimbus_kv::check(key, Some(value)) {
                return Ok(Err(to_wit(e)));
            }
        }
        let writes = key_values.into_iter().map(|(key, value)| {
            let (kv, id) = (kv.clone(), id.clone());
            async move { kv.set(&id, &key, Bytes::from(value), None).await }
        });
        // Concurrent writes share the embedded backend's group commit.
        for result in futures::future::join_all(writes).await {
            if let Err(e) = result {
                return Ok(Err(to_wit(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let id = self.store_of(&bucket)?;
        let kv = guest_try!(self.backend());
        let deletes = keys.iter().map(|key| kv.delete(&id, key));
        for result in futures::future::join_all(deletes).await {
            if let Err(e) = result {
                return Ok(Err(to_wit(e)));
            }
        }
        Ok(Ok(()))
    }
}
