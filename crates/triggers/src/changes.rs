//! Change triggers (`[[trigger.object]]`, `[[trigger.kv]]`): the object store and the
//! key-value backend are wrapped ([`ObservedObjects`], [`ObservedKv`]) so that every successful
//! write or delete made through Nimbus — S3 API, REST, functions — is offered to the
//! [`ChangeRouter`]. A change matching a live trigger becomes a CloudEvent sent, durably, to that
//! trigger's internal queue (`_object.<function>.<bucket>` / `_kv.<function>.<store>`) before
//! the write is answered; a queue consumer then delivers it with the usual retries and dead
//! letters.
//!
//! What this does not cover: a change made behind Nimbus's back (another process writing to
//! the same Redis or NATS bucket), and a crash between a write's commit and the queueing of its
//! event (that event is lost; closing the window needs the event in the write's own
//! transaction).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cloudevents::{EventBuilder, EventBuilderV10};
use nimbus_kv::{KeyPage, KvBackend, KvError, StoreId};
use nimbus_manifest::{ChangeKind, ChangeTrigger};
use nimbus_metering::Metrics;
use nimbus_objstore::store::{
    BucketInfo, ByteStream, ListPage, ListQuery, ObjectInfo, ObjectMeta, ObjectRead, PartInfo,
};
use nimbus_objstore::{ObjectError, ObjectStore};
use nimbus_queue::{NewMessage, QueueBackend, QueueId};
use nimbus_trace::{KeyValue, Span, SpanKind, Tracer};

use crate::cloud;

/// Type of the event of a written object.
pub const OBJECT_CREATED_TYPE: &str = "dev.nimbus.object.created";
/// Type of the event of a deleted object.
pub const OBJECT_DELETED_TYPE: &str = "dev.nimbus.object.deleted";
/// Type of the event of a key set (`set`, `increment`, a successful compare-and-swap).
pub const KV_SET_TYPE: &str = "dev.nimbus.kv.set";
/// Type of the event of a deleted key.
pub const KV_DELETED_TYPE: &str = "dev.nimbus.kv.deleted";

/// What a route watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    Bucket,
    Store,
}

impl Watched {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Watched::Bucket => "object",
            Watched::Store => "kv",
        }
    }
}

struct Route {
    registration: u64,
    tenant: String,
    watched: Watched,
    trigger: ChangeTrigger,
    queue: QueueId,
}

/// Routes changes to the internal queues of the change triggers that are live.
pub struct ChangeRouter {
    queues: Arc<dyn QueueBackend>,
    routes: RwLock<Vec<Route>>,
    next: AtomicU64,
}

impl ChangeRouter {
    /// A router sending to `queues`.
    pub fn new(queues: Arc<dyn QueueBackend>) -> Self {
        Self {
            queues,
            routes: RwLock::new(Vec::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Adds routes; returns the registration that [`ChangeRouter::unregister`] removes.
    pub(crate) fn register(
        &self,
        tenant: &str,
        routes: Vec<(Watched, ChangeTrigger, QueueId)>,
    ) -> u64 {
        let registration = self.next.fetch_add(1, Ordering::Relaxed);
        let mut table = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (watched, trigger, queue) in routes {
            table.push(Route {
                registration,
                tenant: tenant.to_owned(),
                watched,
                trigger,
                queue,
            });
        }
        registration
    }

    /// Removes the routes of `registration`.
    pub(crate) fn unregister(&self, registration: u64) {
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|r| r.registration != registration);
    }

    /// The internal queues that `kind` of `key` in `name` goes to.
    fn matching(
        &self,
        tenant: &str,
        watched: Watched,
        name: &str,
        kind: ChangeKind,
        key: &str,
    ) -> Vec<QueueId> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes
            .iter()
            .filter(|r| {
                r.watched == watched
                    && r.tenant == tenant
                    && r.trigger.source == name
                    && r.trigger.matches(kind, key)
            })
            .map(|r| r.queue.clone())
            .fold(Vec::new(), |mut queues, q| {
                // Old and new version of an app overlap for a moment during a deploy; the same
                // trigger then routes to the same internal queue once, not twice.
                if !queues.contains(&q) {
                    queues.push(q);
                }
                queues
            })
    }

    async fn deliver(&self, queues: Vec<QueueId>, event: cloudevents::Event) {
        for queue in queues {
            let (attributes, body) = cloud::to_message(event.clone());
            let message = NewMessage {
                body,
                attributes,
                delay: Duration::ZERO,
                capacity: None,
            };
            if let Err(e) = self.queues.send(&queue, message).await {
                tracing::error!(queue = %queue, error = %e, "could not queue a change event; the trigger misses this change");
            }
        }
    }

    /// Offers an object change.
    pub async fn object_changed(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        kind: ChangeKind,
        info: Option<&ObjectInfo>,
    ) {
        let queues = self.matching(tenant, Watched::Bucket, bucket, kind, key);
        if queues.is_empty() {
            return;
        }
        let (ty, data) = match (kind, info) {
            (ChangeKind::Written, Some(info)) => (
                OBJECT_CREATED_TYPE,
                serde_json::json!({"bucket": bucket, "key": key, "size": info.size, "etag": info.etag}),
            ),
            _ => (
                OBJECT_DELETED_TYPE,
                serde_json::json!({"bucket": bucket, "key": key}),
            ),
        };
        let event = EventBuilderV10::new()
            .id(uuid::Uuid::now_v7().to_string())
            .source(format!("/buckets/{bucket}"))
            .ty(ty)
            .subject(key)
            .time(chrono::Utc::now())
            .data("application/json", data)
            .build();
        match event {
            Ok(event) => self.deliver(queues, event).await,
            Err(e) => tracing::error!(error = %e, "could not build an object change event"),
        }
    }

    /// Offers a key-value change.
    pub async fn kv_changed(&self, store: &StoreId, key: &str, kind: ChangeKind) {
        let queues = self.matching(&store.tenant, Watched::Store, &store.store, kind, key);
        if queues.is_empty() {
            return;
        }
        let ty = match kind {
            ChangeKind::Written => KV_SET_TYPE,
            ChangeKind::Deleted => KV_DELETED_TYPE,
        };
        let event = EventBuilderV10::new()
            .id(uuid::Uuid::now_v7().to_string())
            .source(format!("/kv/{}", store.store))
            .ty(ty)
            .subject(key)
            .time(chrono::Utc::now())
            .build();
        match event {
            Ok(event) => self.deliver(queues, event).await,
            Err(e) => tracing::error!(error = %e, "could not build a key-value change event"),
        }
    }
}

/// The span of one storage operation made inside an invocation (none outside one).
fn operation_span(
    tracer: &Tracer,
    system: &'static str,
    op: &'static str,
    namespace: &str,
) -> Span {
    if !tracer.is_on() {
        return Span::none();
    }
    let name = if namespace.is_empty() {
        op.to_owned()
    } else {
        format!("{op} {namespace}")
    };
    let mut attributes = vec![
        KeyValue::new("db.system.name", system),
        KeyValue::new("db.operation.name", op),
    ];
    if !namespace.is_empty() {
        attributes.push(KeyValue::new("db.namespace", namespace.to_owned()));
    }
    nimbus_trace::current_child(tracer, name, SpanKind::Client, attributes)
}

/// An object store that reports its changes to a [`ChangeRouter`].
pub struct ObservedObjects {
    inner: Arc<dyn ObjectStore>,
    router: Arc<ChangeRouter>,
    metrics: Option<Arc<Metrics>>,
    tracer: Tracer,
}

impl ObservedObjects {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, router: Arc<ChangeRouter>) -> Self {
        Self {
            inner,
            router,
            metrics: None,
            tracer: Tracer::off(),
        }
    }

    /// Also counts every operation in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also traces every operation made inside an invocation (a span under the invocation's).
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Counts one operation on `namespace` and starts its span.
    fn observe(&self, op: &'static str, namespace: &str) -> Span {
        if let Some(m) = &self.metrics {
            m.object_op(op);
        }
        operation_span(&self.tracer, "nimbus.objects", op, namespace)
    }
}

#[async_trait]
impl ObjectStore for ObservedObjects {
    async fn create_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError> {
        let _span = self.observe("create_bucket", bucket);
        self.inner.create_bucket(tenant, bucket).await
    }
    async fn delete_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError> {
        let _span = self.observe("delete_bucket", bucket);
        self.inner.delete_bucket(tenant, bucket).await
    }
    async fn head_bucket(&self, tenant: &str, bucket: &str) -> Result<BucketInfo, ObjectError> {
        let _span = self.observe("head_bucket", bucket);
        self.inner.head_bucket(tenant, bucket).await
    }
    async fn list_buckets(&self, tenant: &str) -> Result<Vec<BucketInfo>, ObjectError> {
        let _span = self.observe("list_buckets", "");
        self.inner.list_buckets(tenant).await
    }
    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
        body: ByteStream,
    ) -> Result<ObjectInfo, ObjectError> {
        let _span = self.observe("put", bucket);
        let info = self.inner.put(tenant, bucket, key, meta, body).await?;
        self.router
            .object_changed(tenant, bucket, key, ChangeKind::Written, Some(&info))
            .await;
        Ok(info)
    }
    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, ObjectError> {
        let _span = self.observe("get", bucket);
        self.inner.get(tenant, bucket, key, range).await
    }
    async fn head(&self, tenant: &str, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        let _span = self.observe("head", bucket);
        self.inner.head(tenant, bucket, key).await
    }
    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        let _span = self.observe("delete", bucket);
        let existed = self.inner.delete(tenant, bucket, key).await?;
        if existed {
            self.router
                .object_changed(tenant, bucket, key, ChangeKind::Deleted, None)
                .await;
        }
        Ok(existed)
    }
    async fn copy(
        &self,
        tenant: &str,
        from: (&str, &str),
        to: (&str, &str),
        meta: Option<ObjectMeta>,
    ) -> Result<ObjectInfo, ObjectError> {
        let _span = self.observe("copy", to.0);
        let info = self.inner.copy(tenant, from, to, meta).await?;
        self.router
            .object_changed(tenant, to.0, to.1, ChangeKind::Written, Some(&info))
            .await;
        Ok(info)
    }
    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        query: ListQuery,
    ) -> Result<ListPage, ObjectError> {
        let _span = self.observe("list", bucket);
        self.inner.list(tenant, bucket, query).await
    }
    async fn create_upload(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<String, ObjectError> {
        let _span = self.observe("create_upload", bucket);
        self.inner.create_upload(tenant, bucket, key, meta).await
    }
    async fn upload_part(
        &self,
        tenant: &str,
        upload: &str,
        number: u32,
        body: ByteStream,
    ) -> Result<PartInfo, ObjectError> {
        let _span = self.observe("upload_part", "");
        self.inner.upload_part(tenant, upload, number, body).await
    }
    async fn upload_target(
        &self,
        tenant: &str,
        upload: &str,
    ) -> Result<(String, String), ObjectError> {
        let _span = self.observe("upload_target", "");
        self.inner.upload_target(tenant, upload).await
    }
    async fn list_parts(&self, tenant: &str, upload: &str) -> Result<Vec<PartInfo>, ObjectError> {
        let _span = self.observe("list_parts", "");
        self.inner.list_parts(tenant, upload).await
    }
    async fn complete_upload(
        &self,
        tenant: &str,
        upload: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectInfo, ObjectError> {
        let _span = self.observe("complete_upload", "");
        let (bucket, key) = self.inner.upload_target(tenant, upload).await?;
        let info = self.inner.complete_upload(tenant, upload, parts).await?;
        self.router
            .object_changed(tenant, &bucket, &key, ChangeKind::Written, Some(&info))
            .await;
        Ok(info)
    }
    async fn abort_upload(&self, tenant: &str, upload: &str) -> Result<(), ObjectError> {
        let _span = self.observe("abort_upload", "");
        self.inner.abort_upload(tenant, upload).await
    }
}

/// A key-value backend that reports its changes to a [`ChangeRouter`].
pub struct ObservedKv {
    inner: Arc<dyn KvBackend>,
    router: Arc<ChangeRouter>,
    metrics: Option<Arc<Metrics>>,
    tracer: Tracer,
}

impl ObservedKv {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KvBackend>, router: Arc<ChangeRouter>) -> Self {
        Self {
            inner,
            router,
            metrics: None,
            tracer: Tracer::off(),
        }
    }

    /// Also counts every operation in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also traces every operation made inside an invocation (a span under the invocation's).
    pub fn with_tracer(mut self, tracer: Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Counts one operation on `namespace` and starts its span.
    fn observe(&self, op: &'static str, namespace: &str) -> Span {
        if let Some(m) = &self.metrics {
            m.kv_op(op);
        }
        operation_span(&self.tracer, "nimbus.kv", op, namespace)
    }
}

#[async_trait]
impl KvBackend for ObservedKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Bytes>, KvError> {
        let _span = self.observe("get", &store.store);
        self.inner.get(store, key).await
    }
    async fn set(
        &self,
        store: &StoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let _span = self.observe("set", &store.store);
        self.inner.set(store, key, value, ttl).await?;
        self.router
            .kv_changed(store, key, ChangeKind::Written)
            .await;
        Ok(())
    }
    async fn delete(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        let _span = self.observe("delete", &store.store);
        let existed = self.inner.delete(store, key).await?;
        if existed {
            self.router
                .kv_changed(store, key, ChangeKind::Deleted)
                .await;
        }
        Ok(existed)
    }
    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        let _span = self.observe("exists", &store.store);
        self.inner.exists(store, key).await
    }
    async fn list_keys(
        &self,
        store: &StoreId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let _span = self.observe("list_keys", &store.store);
        self.inner.list_keys(store, prefix, cursor, limit).await
    }
    async fn increment(&self, store: &StoreId, key: &str, delta: i64) -> Result<i64, KvError> {
        let _span = self.observe("increment", &store.store);
        let value = self.inner.increment(store, key, delta).await?;
        self.router
            .kv_changed(store, key, ChangeKind::Written)
            .await;
        Ok(value)
    }
    async fn compare_and_swap(
        &self,
        store: &StoreId,
        key: &str,
        expected: Option<&[u8]>,
        new: Bytes,
    ) -> Result<bool, KvError> {
        let _span = self.observe("compare_and_swap", &store.store);
        let swapped = self
            .inner
            .compare_and_swap(store, key, expected, new)
            .await?;
        if swapped {
            self.router
                .kv_changed(store, key, ChangeKind::Written)
                .await;
        }
        Ok(swapped)
    }
}
