//! The platform services behind the host interfaces a guest can import.

use std::sync::Arc;

use nimbus_kv::KvBackend;
use nimbus_objstore::ObjectStore;
use nimbus_secrets::SecretStore;

/// Services shared by every function of the engine. A missing service makes the matching
/// interface fail cleanly at run time (e.g. `wasi:keyvalue` `open` → `no-such-store`), so a
/// component importing it still links.
#[derive(Clone, Default)]
pub struct Services {
    /// The key-value backend behind `wasi:keyvalue`.
    pub kv: Option<Arc<dyn KvBackend>>,
    /// App secrets, served to the functions that declare them through `wasi:config`.
    pub secrets: Option<Arc<SecretStore>>,
    /// The object store behind `wasi:blobstore` (the buckets of the S3 API).
    pub objects: Option<Arc<dyn ObjectStore>>,
    /// The queues behind `nimbus:queue/sender`.
    pub queues: Option<Arc<dyn nimbus_queue::QueueBackend>>,
    /// Where every invocation's usage record goes; `None`: nothing is metered.
    pub usage: Option<Arc<dyn nimbus_metering::UsageSink>>,
    /// Where guests' stdout/stderr lines and platform events about invocations go (besides
    /// the process log); `None`: only the process log.
    pub logs: Option<Arc<dyn nimbus_logs::LogSink>>,
    /// Spans of invocations and of the calls they make (off by default).
    pub tracer: nimbus_trace::Tracer,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("kv", &self.kv.as_ref().map(|_| "…"))
            .field("secrets", &self.secrets)
            .field("objects", &self.objects.as_ref().map(|_| "…"))
            .field("queues", &self.queues.as_ref().map(|_| "…"))
            .field("usage", &self.usage.as_ref().map(|_| "…"))
            .field("logs", &self.logs.as_ref().map(|_| "…"))
            .field("tracer", &self.tracer)
            .finish()
    }
}
