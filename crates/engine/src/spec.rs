//! What every invocation of a function version shares, whatever starts it: the function's
//! [`FunctionSpec`] (capabilities, limits, names) and the [`Invocation`] context handed in by
//! the gateway or a trigger.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_manifest::{Limits, OutboundHost};
use nimbus_metering::TriggerKind;

/// What a function version is allowed to do and how it is named in logs.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The tenant owning the app (and its key-value stores).
    pub tenant: String,
    /// The app the function belongs to.
    pub app: String,
    /// The function's name.
    pub function: String,
    /// The app version this function belongs to.
    pub version: u64,
    /// Resource limits.
    pub limits: Limits,
    /// Environment variables visible to the guest.
    pub env: BTreeMap<String, String>,
    /// Hosts the guest may call.
    pub allowed_outbound_hosts: Vec<OutboundHost>,
    /// Key-value stores the guest may open.
    pub key_value_stores: Vec<String>,
    /// `wasi:config` values.
    pub config: BTreeMap<String, String>,
    /// Secrets of the app also served through `wasi:config`, read at each invocation (so a
    /// `nimbus secret set` reaches the next request without a redeploy).
    pub secrets: Vec<String>,
    /// Buckets the guest may open through `wasi:blobstore`.
    pub buckets: Vec<String>,
    /// Queues of the app the guest may send to through `nimbus:queue/sender`, with their
    /// limits.
    pub queues: Vec<nimbus_manifest::Queue>,
}

/// Per-invocation context handed in by the gateway or a trigger.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The id of this run, echoed in `x-request-id` and tagged on every log line.
    pub request_id: Arc<str>,
    /// The invocation this run belongs to: the same across retries of one event or async
    /// invocation (for HTTP, the request id).
    pub invocation_id: Arc<str>,
    /// What started it (recorded in its usage record).
    pub trigger: TriggerKind,
    /// The span the invocation's span hangs under (the gateway's, a queue message's
    /// sender's); empty: it starts a trace.
    pub parent: nimbus_trace::Parent,
}

impl Invocation {
    /// A run that is its own invocation.
    pub fn new(request_id: Arc<str>, trigger: TriggerKind) -> Self {
        Self {
            invocation_id: request_id.clone(),
            request_id,
            trigger,
            parent: nimbus_trace::Parent::default(),
        }
    }

    /// The same run, traced under `parent`.
    pub fn with_parent(mut self, parent: nimbus_trace::Parent) -> Self {
        self.parent = parent;
        self
    }

    /// The same run, as part of invocation `id` (a retried event, an async invocation).
    pub fn in_invocation(mut self, id: impl Into<Arc<str>>) -> Self {
        self.invocation_id = id.into();
        self
    }
}
