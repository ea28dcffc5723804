//! `wasi:blobstore@0.2.0-draft` for guests, on an [`ObjectStore`] — the same buckets the S3 API
//! serves, so what a function writes is readable with the aws CLI and the other way round.
//!
//! Capabilities: containers are the tenant's buckets, and a function may touch only the ones
//! its manifest lists in `buckets` (create, open, delete, copy/move between them); any other
//! name is refused with "access denied".
//!
//! Streaming: an `outgoing-value`'s body stream feeds the object store while the guest writes
//! (once `write-data` has named the object); bytes written before that are held in memory, up
//! to [`MAX_SPOOL_BYTES`]. `finish` returns once the object is durable. `get-data` streams from
//! the stored files; `incoming-value-consume-sync` is for small objects
//! ([`MAX_SYNC_READ_BYTES`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use nimbus_objstore::ObjectStore;
use nimbus_objstore::store::{ByteStream, ListQuery, ObjectMeta};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::host::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/blobstore",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
        },
        require_store_data_send: true,
    });
}

use bindings::wasi::blobstore::{blobstore, container, types};

/// Bytes an `outgoing-value` may hold before `write-data` names its object.
pub const MAX_SPOOL_BYTES: usize = 64 << 20;
/// Largest object `incoming-value-consume-sync` returns (use the async body beyond).
pub const MAX_SYNC_READ_BYTES: u64 = 64 << 20;
/// Pipe between the guest's output stream and the host.
const PIPE_BYTES: usize = 256 << 10;

/// An open container (bucket).
pub struct Container {
    name: String,
}

/// A listing in progress.
pub struct ObjectNames {
    bucket: String,
    after: Option<String>,
    done: bool,
}

/// An object value being written.
pub struct OutgoingValue {
    /// Attaches the object store's writer to the forwarder (`write-data`).
    attach: Option<oneshot::Sender<mpsc::Sender<Result<Bytes, std::io::Error>>>>,
    /// Whether the body stream was handed out (`outgoing-value-write-body`).
    has_body: bool,
    /// Opened by `finish`: only then does the store see the end of the body and commit. If
    /// the value is dropped unfinished, the store sees an error and commits nothing.
    gate: Option<oneshot::Sender<()>>,
    /// The store's write, started by `write-data`; `finish` awaits it.
    put: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

/// An object value being read.
pub struct IncomingValue {
    body: ByteStream,
    size: u64,
}

/// The blobstore capability of one invocation.
#[derive(Clone, Default)]
pub struct BlobCtx {
    store: Option<Arc<dyn ObjectStore>>,
    tenant: Arc<str>,
    allowed: Arc<[String]>,
}

impl BlobCtx {
    /// Access to the `allowed` buckets of `tenant` (`None`: no object store; every call fails).
    pub fn new(
        store: Option<Arc<dyn ObjectStore>>,
        tenant: Arc<str>,
        allowed: Arc<[String]>,
    ) -> Self {
        Self {
            store,
            tenant,
            allowed,
        }
    }
}

/// What the generated host traits are implemented on.
pub struct BlobView<'a> {
    ctx: &'a BlobCtx,
    table: &'a mut ResourceTable,
}

struct WasiBlobstore;

impl HasData for WasiBlobstore {
    type Data<'a> = BlobView<'a>;
}

fn view(state: &mut HostState) -> BlobView<'_> {
    BlobView {
        ctx: &state.blob,
        table: &mut state.table,
    }
}

/// Adds `wasi:blobstore` to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    blobstore::add_to_linker::<HostState, WasiBlobstore>(linker, view)?;
    container::add_to_linker::<HostState, WasiBlobstore>(linker, view)?;
    types::add_to_linker::<HostState, WasiBlobstore>(linker, view)?;
    Ok(())
}

type Res<T> = wasmtime::Result<Result<T, String>>;

/// `?` for guest-visible errors: returns `Ok(Err(message))` from a host function.
macro_rules! guest_try {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(e) => return Ok(Err(e.to_string())),
        }
    };
}

fn err<T>(e: impl std::fmt::Display) -> Res<T> {
    Ok(Err(e.to_string()))
}

fn millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl BlobView<'_> {
    /// The store, if `bucket` is one the function declared.
    fn access(&self, bucket: &str) -> Result<(Arc<dyn ObjectStore>, Arc<str>), String> {
        let store = self
            .ctx
            .store
            .clone()
            .ok_or_else(|| "no object store is configured".to_owned())?;
        if !self.ctx.allowed.iter().any(|b| b == bucket) {
            return Err(format!(
                "access denied: container `{bucket}` is not in this function's `buckets`"
            ));
        }
        Ok((store, self.ctx.tenant.clone()))
    }

    fn bucket_of(&self, container: &Resource<Container>) -> wasmtime::Result<String> {
        Ok(self.table.get(container)?.name.clone())
    }
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> Res<Resource<Container>> {
        let (store, tenant) = guest_try!(self.access(&name));
        guest_try!(store.create_bucket(&tenant, &name).await);
        Ok(Ok(self.table.push(Container { name })?))
    }

    async fn get_container(&mut self, name: String) -> Res<Resource<Container>> {
        let (store, tenant) = guest_try!(self.access(&name));
        guest_try!(store.head_bucket(&tenant, &name).await);
        Ok(Ok(self.table.push(Container { name })?))
    }

    async fn delete_container(&mut self, name: String) -> Res<()> {
        let (store, tenant) = guest_try!(self.access(&name));
        Ok(store
            .delete_bucket(&tenant, &name)
            .await
            .map_err(|e| e.to_string()))
    }

    async fn container_exists(&mut self, name: String) -> Res<bool> {
        let (store, tenant) = guest_try!(self.access(&name));
        match store.head_bucket(&tenant, &name).await {
            Ok(_) => Ok(Ok(true)),
            Err(nimbus_objstore::ObjectError::NoSuchBucket(_)) => Ok(Ok(false)),
            Err(e) => err(e),
        }
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Res<()> {
        let (store, tenant) = guest_try!(
            self.access(&src.container)
                .and(self.access(&dest.container))
        );
        Ok(store
            .copy(
                &tenant,
                (&src.container, &src.object),
                (&dest.container, &dest.object),
                None,
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string()))
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Res<()> {
        let (store, tenant) = guest_try!(
            self.access(&src.container)
                .and(self.access(&dest.container))
        );
        guest_try!(
            store
                .copy(
                    &tenant,
                    (&src.container, &src.object),
                    (&dest.container, &dest.object),
                    None,
                )
                .await
        );
        Ok(store
            .delete(&tenant, &src.container, &src.object)
            .await
            .map(drop)
            .map_err(|e| e.to_string()))
    }
}

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, this: Resource<Container>) -> Res<String> {
        Ok(Ok(self.bucket_of(&this)?))
    }

    async fn info(&mut self, this: Resource<Container>) -> Res<types::ContainerMetadata> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        Ok(store
            .head_bucket(&tenant, &bucket)
            .await
            .map(|b| types::ContainerMetadata {
                name: b.name,
                created_at: millis(b.created),
            })
            .map_err(|e| e.to_string()))
    }

    async fn get_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Res<Resource<IncomingValue>> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        if end < start {
            return err(format!("end ({end}) is before start ({start})"));
        }
        // Offsets are inclusive; `end = u64::MAX` reads to the end.
        let last = (end != u64::MAX).then_some(end);
        let read = match store
            .get(&tenant, &bucket, &name, Some((start, last)))
            .await
        {
            Ok(read) => read,
            // An empty object has no byte 0; reading "all of it" is still fine.
            Err(nimbus_objstore::ObjectError::InvalidRange(0)) if start == 0 => {
                guest_try!(store.get(&tenant, &bucket, &name, None).await)
            }
            Err(e) => return err(e),
        };
        let size = read.range.end - read.range.start;
        Ok(Ok(self.table.push(IncomingValue {
            body: read.body,
            size,
        })?))
    }

    async fn write_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> Res<()> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        guest_try!(nimbus_objstore::names::check_key(&name));
        let value = self.table.get_mut(&data)?;
        if value.put.is_some() {
            return err("write-data was already called for this outgoing-value");
        }
        // The body either flows through the forwarder (write-body was called) or is empty.
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        match value.attach.take() {
            Some(attach) => {
                if attach.send(tx).is_err() {
                    return err("the value's body stream failed");
                }
            }
            None => drop(tx),
        }
        let (gate, opened) = oneshot::channel::<()>();
        value.gate = Some(gate);
        let end = futures::stream::once(opened).filter_map(|finished| async move {
            match finished {
                Ok(()) => None,
                Err(_) => Some(Err(std::io::Error::other(
                    "the outgoing-value was dropped without finish",
                ))),
            }
        });
        let body: ByteStream = Box::pin(tokio_stream_of(rx).chain(end));
        value.put = Some(tokio::spawn(nimbus_trace::propagate(async move {
            store
                .put(&tenant, &bucket, &name, ObjectMeta::default(), body)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })));
        Ok(Ok(()))
    }

    async fn list_objects(&mut self, this: Resource<Container>) -> Res<Resource<ObjectNames>> {
        let bucket = self.bucket_of(&this)?;
        guest_try!(self.access(&bucket));
        Ok(Ok(self.table.push(ObjectNames {
            bucket,
            after: None,
            done: false,
        })?))
    }

    async fn delete_object(&mut self, this: Resource<Container>, name: String) -> Res<()> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        Ok(store
            .delete(&tenant, &bucket, &name)
            .await
            .map(drop)
            .map_err(|e| e.to_string()))
    }

    async fn delete_objects(&mut self, this: Resource<Container>, names: Vec<String>) -> Res<()> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        for name in names {
            guest_try!(store.delete(&tenant, &bucket, &name).await);
        }
        Ok(Ok(()))
    }

    async fn has_object(&mut self, this: Resource<Container>, name: String) -> Res<bool> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        match store.head(&tenant, &bucket, &name).await {
            Ok(_) => Ok(Ok(true)),
            Err(nimbus_objstore::ObjectError::NoSuchKey(..)) => Ok(Ok(false)),
            Err(e) => err(e),
        }
    }

    async fn object_info(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> Res<types::ObjectMetadata> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        Ok(store
            .head(&tenant, &bucket, &name)
            .await
            .map(|o| types::ObjectMetadata {
                name: o.key,
                container: bucket.clone(),
                created_at: millis(o.last_modified),
                size: o.size,
            })
            .map_err(|e| e.to_string()))
    }

    async fn clear(&mut self, this: Resource<Container>) -> Res<()> {
        let bucket = self.bucket_of(&this)?;
        let (store, tenant) = guest_try!(self.access(&bucket));
        loop {
            let query = ListQuery {
                max: 1000,
                ..ListQuery::default()
            };
            let page = guest_try!(store.list(&tenant, &bucket, query).await);
            if page.objects.is_empty() {
                return Ok(Ok(()));
            }
            for object in page.objects {
                guest_try!(store.delete(&tenant, &bucket, &object.key).await);
            }
        }
    }

    async fn drop(&mut self, this: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for BlobView<'_> {
    async fn read_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        len: u64,
    ) -> Res<(Vec<String>, bool)> {
        let (bucket, after, done) = {
            let names = self.table.get(&this)?;
            (names.bucket.clone(), names.after.clone(), names.done)
        };
        if done || len == 0 {
            return Ok(Ok((Vec::new(), done)));
        }
        let (store, tenant) = guest_try!(self.access(&bucket));
        let query = ListQuery {
            prefix: String::new(),
            delimiter: None,
            after,
            max: usize::try_from(len).unwrap_or(1000).min(1000),
        };
        let page = guest_try!(store.list(&tenant, &bucket, query).await);
        let names = self.table.get_mut(&this)?;
        names.done = page.next.is_none();
        names.after = page.next;
        Ok(Ok((
            page.objects.into_iter().map(|o| o.key).collect(),
            names.done,
        )))
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        num: u64,
    ) -> Res<(u64, bool)> {
        match self.read_stream_object_names(this, num).await? {
            Ok((names, done)) => Ok(Ok((names.len() as u64, done))),
            Err(e) => err(e),
        }
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue {
            attach: None,
            has_body: false,
            gate: None,
            put: None,
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let value = self.table.get_mut(&this)?;
        if value.has_body || value.put.is_some() {
            return Ok(Err(()));
        }
        value.has_body = true;
        let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let (attach, attached) = oneshot::channel();
        value.attach = Some(attach);
        tokio::spawn(nimbus_trace::propagate(forward(reader, attached)));
        let stream: DynOutputStream = Box::new(AsyncWriteStream::new(PIPE_BYTES, writer));
        Ok(Ok(self.table.push_child(stream, &this)?))
    }

    async fn finish(&mut self, this: Resource<OutgoingValue>) -> Res<()> {
        let mut value = self.table.delete(this)?;
        let Some(put) = value.put.take() else {
            return err("finish before write-data: the value was not written anywhere");
        };
        if let Some(gate) = value.gate.take() {
            let _ = gate.send(());
        }
        match put.await {
            Ok(result) => Ok(result),
            Err(e) => err(format!("the write failed: {e}")),
        }
    }

    async fn drop(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        // Dropped without `finish`: the gate's sender goes with it, so the store's body ends in
        // an error and nothing is committed (the write cleans up its temporary file).
        self.table.delete(this)?;
        Ok(())
    }
}

/// Moves the guest's body bytes to the object store: held in memory until `write-data` attaches
/// the store's writer, streamed after that.
async fn forward(
    mut reader: tokio::io::DuplexStream,
    attached: oneshot::Receiver<mpsc::Sender<Result<Bytes, std::io::Error>>>,
) {
    let mut spool: Vec<Bytes> = Vec::new();
    let mut spooled = 0usize;
    let mut attached = Some(attached);
    let mut sink: Option<mpsc::Sender<Result<Bytes, std::io::Error>>> = None;
    loop {
        let mut buf = BytesMut::with_capacity(64 << 10);
        let read = match (&mut attached, sink.is_some()) {
            (Some(pending), false) => {
                tokio::select! {
                    r = reader.read_buf(&mut buf) => Some(r),
                    s = pending => {
                        attached = None;
                        match s {
                            Ok(tx) => {
                                for chunk in spool.drain(..) {
                                    if tx.send(Ok(chunk)).await.is_err() {
                                        return;
                                    }
                                }
                                sink = Some(tx);
                            }
                            Err(_) => return,
                        }
                        None
                    }
                }
            }
            _ => Some(reader.read_buf(&mut buf).await),
        };
        let Some(read) = read else { continue };
        match read {
            Ok(0) => {
                // End of body: if nobody attached yet, wait for `write-data` to do so.
                if sink.is_none() {
                    let Some(pending) = attached.take() else {
                        return;
                    };
                    let Ok(tx) = pending.await else { return };
                    for chunk in spool.drain(..) {
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                }
                return;
            }
            Ok(_) => {
                let chunk = buf.freeze();
                match &sink {
                    Some(tx) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        spooled += chunk.len();
                        if spooled > MAX_SPOOL_BYTES {
                            // Dropping the reader fails the guest's next write.
                            tracing::warn!(
                                "wasi:blobstore: over {MAX_SPOOL_BYTES} bytes written before write-data"
                            );
                            return;
                        }
                        spool.push(chunk);
                    }
                }
            }
            Err(e) => {
                if let Some(tx) = &sink {
                    let _ = tx.send(Err(e)).await;
                }
                return;
            }
        }
    }
}

/// A `Stream` over an mpsc receiver.
fn tokio_stream_of(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl types::HostIncomingValue for BlobView<'_> {
    async fn incoming_value_consume_sync(&mut self, this: Resource<IncomingValue>) -> Res<Vec<u8>> {
        let value = self.table.delete(this)?;
        if value.size > MAX_SYNC_READ_BYTES {
            return err(format!(
                "the object is {} bytes; consume-sync returns at most {MAX_SYNC_READ_BYTES}, use consume-async",
                value.size
            ));
        }
        let mut body = value.body;
        let mut out = Vec::with_capacity(usize::try_from(value.size).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(e) => return err(format!("reading the object failed: {e}")),
            }
        }
        Ok(Ok(out))
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> Res<Resource<DynInputStream>> {
        let value = self.table.delete(this)?;
        let reader = tokio_util::io::StreamReader::new(value.body);
        let stream: DynInputStream = Box::new(AsyncReadStream::new(reader));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.size)
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
