//! The deploy engine of the control plane: turns stored app versions into live functions and
//! routes, atomically.
//!
//! A deploy (or rollback) prepares every function of the new version — load from the artifact
//! cache or compile, type-check against the host, pre-instantiate — and builds the complete
//! new route table, checking for conflicts with every other app, *before* anything changes.
//! Only then is the version record committed to the state store and the route table swapped
//! in one atomic store. A failure at any step leaves the previous version serving, untouched.
//! Deploys are serialised by one lock; requests never take it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nimbus_engine::{Engine, EventFunction, FunctionSpec, HttpFunction, LoadedComponent};
use nimbus_gateway::{Gateway, RouteOwner, Routes, Target};
use nimbus_manifest::{App, Route};
use nimbus_triggers::{AppTriggers, Triggers};
use tokio::sync::Mutex;

use crate::blobs::{BlobStore, validate_digest};
use crate::error::ControlError;
use crate::store::{DEFAULT_TENANT, StateStore};
use crate::types::{
    AppRecord, AppStatus, ComponentLoad, DeployRequest, DeployResponse, VersionRecord,
};

/// The current record schema version.
const RECORD_SCHEMA: u32 = 1;

/// The live functions of one app's active version.
struct LiveApp {
    routes: Vec<(Route, RouteOwner, Arc<Target>)>,
    /// The version's event-handler functions, by name (those named by a trigger, or without
    /// routes).
    events: BTreeMap<String, EventFunction>,
    /// The version's HTTP functions, by name (for asynchronous invocations).
    http: BTreeMap<String, HttpFunction>,
    /// Its running triggers, once live; dropping them stops them.
    triggers: Option<AppTriggers>,
}

/// The control plane's view of the running platform.
pub struct Platform {
    engine: Engine,
    gateway: Arc<Gateway>,
    store: StateStore,
    blobs: BlobStore,
    triggers: Triggers,
    live: Mutex<BTreeMap<String, LiveApp>>,
}

impl Platform {
    /// Assembles a platform from its parts. Call [`Platform::restore`] next.
    pub fn new(
        engine: Engine,
        gateway: Arc<Gateway>,
        store: StateStore,
        blobs: BlobStore,
        triggers: Triggers,
    ) -> Self {
        Self {
            engine,
            gateway,
            store,
            blobs,
            triggers,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    /// Asynchronous invocations, if this platform supports them.
    pub fn invocations(&self) -> Option<&Arc<nimbus_triggers::invoke::Invocations>> {
        self.triggers.invocations()
    }

    /// The queue backend, if this platform has one.
    pub fn queues(&self) -> Option<&Arc<dyn nimbus_queue::QueueBackend>> {
        self.triggers.queues()
    }

    /// Stops every trigger and waits up to `grace` for running event invocations.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.triggers.shutdown(grace).await;
    }

    /// Takes every app off the air once the servers have stopped: routes are emptied and the
    /// live functions dropped, so their kept instances end their provisioned billing spans
    /// while the usage meter still writes. Shutdown calls this before closing the meter;
    /// the stored records are untouched, so the next start restores every app.
    pub async fn unload(&self) {
        let mut live = self.live.lock().await;
        self.gateway.set_routes(Routes::default());
        live.clear();
    }

    /// The manifest of `name`'s active version.
    pub fn active_app(&self, name: &str) -> Result<App, ControlError> {
        let record = self.record(name)?;
        record
            .active()
            .map(|v| v.app.clone())
            .ok_or_else(|| ControlError::NotFound(format!("app `{name}` has no active version")))
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Brings every stored app back to its active version. An app that cannot be restored is
    /// logged and skipped; the others serve. Returns how many apps are live.
    pub async fn restore(&self) -> Result<usize, ControlError> {
        let mut live = self.live.lock().await;
        for record in self.store.list_apps(DEFAULT_TENANT)? {
            let Some(version) = record.active() else {
                continue;
            };
            match self.prepare(version).await {
                Ok((mut app, _)) => {
                    match self
                        .triggers
                        .start(DEFAULT_TENANT, &version.app, &app.events, &app.http)
                    {
                        Ok(triggers) => app.triggers = Some(triggers),
                        Err(err) => {
                            tracing::error!(app = %record.name, error = %err, "could not start the app's triggers");
                        }
                    }
                    live.insert(record.name.clone(), app);
                }
                Err(err) => {
                    tracing::error!(app = %record.name, error = %err, "could not restore app");
                }
            }
        }
        // Stored apps were conflict-free when deployed, so this only fails on corruption.
        let routes = build_routes(&live).map_err(|e| ControlError::RouteConflict(e.to_string()))?;
        self.gateway.set_routes(routes);
        Ok(live.len())
    }

    /// Deploys a new version of an app.
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployResponse, ControlError> {
        let file = request.manifest_file.as_deref().unwrap_or("nimbus.toml");
        let app = nimbus_manifest::parse(&request.manifest, file)
            .map_err(|e| ControlError::InvalidManifest(e.to_string()))?;
        check_components(&app, &request.components)?;
        self.check_secrets(&app)?;
        self.check_buckets(&app).await?;
        for digest in request.components.values() {
            if !self.blobs.contains(digest)? {
                return Err(ControlError::BadRequest(format!(
                    "component {digest} has not been uploaded (PUT /v1/blobs/{digest})"
                )));
            }
        }

        let mut live = self.live.lock().await;
        let mut record = self
            .store
            .get_app(DEFAULT_TENANT, &app.name)?
            .unwrap_or_else(|| AppRecord {
                schema: RECORD_SCHEMA,
                tenant: DEFAULT_TENANT.into(),
                name: app.name.clone(),
                active_version: 0,
                versions: Vec::new(),
            });
        let version = VersionRecord {
            version: record.versions.last().map_or(1, |v| v.version + 1),
            created_at: now(),
            manifest: request.manifest,
            app,
            components: request.components,
        };
        let (prepared, loads) = self.prepare(&version).await?;
        record.active_version = version.version;
        record.versions.push(version);
        self.activate(&mut live, &record, prepared)?;
        Ok(DeployResponse {
            app: record.status(),
            components: loads,
        })
    }

    /// Every secret a function declares must be set before the app is deployed: a typo or a
    /// forgotten `nimbus secret set` fails the deploy instead of the first request. (Restores
    /// do not check: a secret removed later is simply absent at run time.)
    fn check_secrets(&self, app: &nimbus_manifest::App) -> Result<(), ControlError> {
        let store = self.engine.services().secrets.as_ref();
        for function in &app.functions {
            for name in &function.secrets {
                if !store.is_some_and(|s| s.contains(DEFAULT_TENANT, &app.name, name)) {
                    return Err(ControlError::BadRequest(format!(
                        "function `{}` reads secret `{name}`, which is not set for app `{}`: \
                         set it with `nimbus secret set {} {name}`",
                        function.name, app.name, app.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Object triggers watch buckets that must exist: a typo fails the deploy, naming it.
    async fn check_buckets(&self, app: &nimbus_manifest::App) -> Result<(), ControlError> {
        for trigger in &app.triggers.object {
            let Some(objects) = self.engine.services().objects.as_ref() else {
                return Err(ControlError::BadRequest(
                    "object triggers need object storage, and this server has none".into(),
                ));
            };
            match objects.head_bucket(DEFAULT_TENANT, &trigger.source).await {
                Ok(_) => {}
                Err(nimbus_objstore::ObjectError::NoSuchBucket(_)) => {
                    return Err(ControlError::BadRequest(format!(
                        "function `{}` is triggered by bucket `{}`, which does not exist; create it first (e.g. `aws s3 mb s3://{}`)",
                        trigger.function, trigger.source, trigger.source
                    )));
                }
                Err(e) => return Err(ControlError::Unavailable(format!("object storage: {e}"))),
            }
        }
        Ok(())
    }

    /// The secret store, if this platform has one.
    pub fn secrets(&self) -> Option<&std::sync::Arc<nimbus_secrets::SecretStore>> {
        self.engine.services().secrets.as_ref()
    }

    /// Makes an earlier version active again (default: the one before the active one).
    pub async fn rollback(&self, name: &str, to: Option<u64>) -> Result<AppStatus, ControlError> {
        let mut live = self.live.lock().await;
        let mut record = self.record(name)?;
        let target = match to {
            Some(v) => v,
            None => record
                .versions
                .iter()
                .rev()
                .map(|v| v.version)
                .find(|v| *v < record.active_version)
                .ok_or_else(|| {
                    ControlError::BadRequest(format!(
                        "app `{name}` has no version before {}",
                        record.active_version
                    ))
                })?,
        };
        let version = record
            .versions
            .iter()
            .find(|v| v.version == target)
            .ok_or_else(|| {
                ControlError::NotFound(format!("app `{name}` has no version {target}"))
            })?;
        let (prepared, _) = self.prepare(version).await?;
        record.active_version = target;
        self.activate(&mut live, &record, prepared)?;
        Ok(record.status())
    }

    /// Deletes an app: its routes go away at once, then its record.
    pub async fn delete(&self, name: &str) -> Result<(), ControlError> {
        let mut live = self.live.lock().await;
        self.record(name)?;
        let removed = live.remove(name);
        match build_routes(&live) {
            Ok(routes) => self.gateway.set_routes(routes),
            Err(e) => {
                if let Some(app) = removed {
                    live.insert(name.to_owned(), app);
                }
                return Err(ControlError::RouteConflict(e.to_string()));
            }
        }
        self.store.delete_app(DEFAULT_TENANT, name)?;
        Ok(())
    }

    /// Removes the component blobs no stored version references (see
    /// [`BlobStore::sweep`]) that are older than `grace`. Returns how many were removed.
    pub async fn sweep_blobs(&self, grace: std::time::Duration) -> Result<usize, ControlError> {
        // Under the deploy lock: a deploy's record is stored before the lock is released, so
        // every blob a stored version names is in `keep`.
        let _live = self.live.lock().await;
        let keep: std::collections::HashSet<String> = self
            .store
            .list_apps(DEFAULT_TENANT)?
            .into_iter()
            .flat_map(|record| record.versions)
            .flat_map(|version| version.components.into_values())
            .collect();
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.sweep(&keep, grace))
            .await
            .map_err(|e| ControlError::Store(e.to_string()))?
    }

    /// All apps.
    pub fn list(&self) -> Result<Vec<AppStatus>, ControlError> {
        let mut apps: Vec<AppStatus> = self
            .store
            .list_apps(DEFAULT_TENANT)?
            .iter()
            .map(AppRecord::status)
            .collect();
        for app in &mut apps {
            self.fill_residency(app);
        }
        Ok(apps)
    }

    /// One app.
    pub fn get(&self, name: &str) -> Result<AppStatus, ControlError> {
        let mut app = self.record(name)?.status();
        self.fill_residency(&mut app);
        Ok(app)
    }

    /// What `/metrics` reads at scrape time: every live function's residency and in-flight
    /// count, and every declared queue's depth.
    pub async fn metrics_snapshot(&self) -> nimbus_metering::metrics::Snapshot {
        use nimbus_metering::metrics::{FunctionGauge, QueueGauge};
        let mut snapshot = nimbus_metering::metrics::Snapshot::default();
        let shares = self.engine.cpu_shares();
        snapshot.cpu_contended = Some(shares.contended);
        snapshot.apps = shares
            .apps
            .into_iter()
            .filter(|a| a.tenant == DEFAULT_TENANT)
            .map(|a| nimbus_metering::metrics::AppGauge {
                app: a.app,
                throttled: a.throttled,
            })
            .collect();
        let apps: Vec<String> = {
            let live = self.live.lock().await;
            for (app, state) in live.iter() {
                let mut seen = std::collections::BTreeMap::<&str, FunctionGauge>::new();
                let gauge = |name: &str| FunctionGauge {
                    app: app.clone(),
                    function: name.to_owned(),
                    resident: false,
                    in_flight: 0,
                    ready: 0,
                };
                for (name, f) in &state.http {
                    let e = seen.entry(name).or_insert_with(|| gauge(name));
                    e.resident |= f.is_resident();
                    e.in_flight += u64::from(f.in_flight());
                    e.ready += f.ready_instances() as u64;
                }
                for (name, f) in &state.events {
                    let e = seen.entry(name).or_insert_with(|| gauge(name));
                    e.resident |= f.is_resident();
                    e.in_flight += u64::from(f.in_flight());
                    e.ready += f.ready_instances() as u64;
                }
                snapshot.functions.extend(seen.into_values());
            }
            live.keys().cloned().collect()
        };
        let Some(queues) = self.queues() else {
            return snapshot;
        };
        for app in apps {
            let Ok(manifest) = self.active_app(&app) else {
                continue;
            };
            for queue in &manifest.queues {
                let id = nimbus_queue::QueueId::new(DEFAULT_TENANT, &app, &queue.name);
                if let Ok(stats) = queues.stats(&id).await {
                    snapshot.queues.push(QueueGauge {
                        app: app.clone(),
                        queue: queue.name.clone(),
                        ready: stats.ready,
                        delayed: stats.delayed,
                        in_flight: stats.in_flight,
                    });
                }
            }
        }
        snapshot
    }

    /// Says which functions have their code in memory, unless a deploy holds the live state.
    fn fill_residency(&self, app: &mut AppStatus) {
        let Ok(live) = self.live.try_lock() else {
            return;
        };
        let Some(live) = live.get(&app.name) else {
            return;
        };
        for function in &mut app.functions {
            let http = live.http.get(&function.name).map(HttpFunction::is_resident);
            let event = live
                .events
                .get(&function.name)
                .map(EventFunction::is_resident);
            function.resident = match (http, event) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
            };
        }
    }

    fn record(&self, name: &str) -> Result<AppRecord, ControlError> {
        self.store
            .get_app(DEFAULT_TENANT, name)?
            .ok_or_else(|| ControlError::NotFound(format!("app `{name}` not found")))
    }

    /// Checks routes against every other app, commits the record, then swaps the routes.
    fn activate(
        &self,
        live: &mut BTreeMap<String, LiveApp>,
        record: &AppRecord,
        mut prepared: LiveApp,
    ) -> Result<(), ControlError> {
        let app = record.active().map(|v| &v.app).ok_or_else(|| {
            ControlError::Store("activating a version that is not in the record".into())
        })?;
        // Started before the switch so a failure changes nothing; the old version's triggers
        // stop when its `LiveApp` is dropped below. Cron ticks are claimed atomically, so the
        // two versions overlapping for a moment cannot fire a tick twice.
        prepared.triggers = Some(
            self.triggers
                .start(DEFAULT_TENANT, app, &prepared.events, &prepared.http)
                .map_err(|e| ControlError::BadRequest(e.to_string()))?,
        );
        let previous = live.insert(record.name.clone(), prepared);
        let routes = match build_routes(live) {
            Ok(routes) => routes,
            Err(e) => {
                restore_entry(live, &record.name, previous);
                return Err(ControlError::RouteConflict(e.to_string()));
            }
        };
        if let Err(e) = self.store.put_app(record) {
            restore_entry(live, &record.name, previous);
            return Err(e);
        }
        self.gateway.set_routes(routes);
        tracing::info!(app = %record.name, version = record.active_version, "version live");
        Ok(())
    }

    /// Loads and prepares every function of a version, without touching live state.
    async fn prepare(
        &self,
        version: &VersionRecord,
    ) -> Result<(LiveApp, Vec<ComponentLoad>), ControlError> {
        let mut loaded: BTreeMap<String, LoadedComponent> = BTreeMap::new();
        let mut loads = Vec::new();
        let mut routes = Vec::new();
        let mut events = BTreeMap::new();
        let mut http = BTreeMap::new();
        for function in &version.app.functions {
            let invalid = |e: nimbus_engine::EngineError| ControlError::InvalidComponent {
                function: function.name.clone(),
                message: e.to_string(),
            };
            let digest = version.components.get(&function.name).ok_or_else(|| {
                ControlError::BadRequest(format!("no component for function `{}`", function.name))
            })?;
            let component = match loaded.get(digest) {
                Some(c) => c.clone(),
                None => {
                    let c = match self.engine.load_cached(digest).map_err(invalid)? {
                        Some(c) => c,
                        None => {
                            let bytes = self.blobs.read(digest).await?;
                            let engine = self.engine.clone();
                            tokio::task::spawn_blocking(move || engine.load(&bytes))
                                .await
                                .map_err(|e| ControlError::Store(format!("compile task: {e}")))?
                                .map_err(invalid)?
                        }
                    };
                    loads.push(ComponentLoad {
                        digest: c.digest.clone(),
                        cache_hit: c.cache_hit,
                        load_ms: u64::try_from(c.load_ms).unwrap_or(u64::MAX),
                    });
                    loaded.insert(digest.clone(), c.clone());
                    c
                }
            };
            let spec = FunctionSpec {
                tenant: DEFAULT_TENANT.into(),
                app: version.app.name.clone(),
                function: function.name.clone(),
                version: version.version,
                limits: function.limits,
                env: function.env.clone(),
                allowed_outbound_hosts: function.allowed_outbound_hosts.clone(),
                key_value_stores: function.key_value_stores.clone(),
                config: function.config.clone(),
                secrets: function.secrets.clone(),
                buckets: function.buckets.clone(),
                queues: version
                    .app
                    .queues
                    .iter()
                    .filter(|q| function.queues.contains(&q.name))
                    .cloned()
                    .collect(),
            };
            // A function serves HTTP if it has routes and events if a trigger names it; a
            // component may export both worlds.
            if !function.routes.is_empty() {
                let prepared = self
                    .engine
                    .prepare(&component, spec.clone())
                    .map_err(invalid)?;
                prepared.warm_up().await.map_err(invalid)?;
                http.insert(function.name.clone(), prepared.clone());
                let target = Arc::new(Target::new(version.app.name.clone(), prepared));
                let owner = RouteOwner {
                    app: version.app.name.clone(),
                    function: function.name.clone(),
                };
                for route in &function.routes {
                    routes.push((route.clone(), owner.clone(), target.clone()));
                }
            }
            if version.app.triggered(&function.name) || function.routes.is_empty() {
                let mut prepared = self
                    .engine
                    .prepare_event(&component, spec)
                    .map_err(invalid)?;
                if !function.routes.is_empty() {
                    // One pool of `min_instances` per function: the HTTP side's.
                    prepared = prepared.without_ready_instances();
                }
                prepared.warm_up().await.map_err(invalid)?;
                events.insert(function.name.clone(), prepared);
            }
        }
        let app = LiveApp {
            routes,
            events,
            http,
            triggers: None,
        };
        Ok((app, loads))
    }
}

fn restore_entry(live: &mut BTreeMap<String, LiveApp>, name: &str, previous: Option<LiveApp>) {
    match previous {
        Some(app) => {
            live.insert(name.to_owned(), app);
        }
        None => {
            live.remove(name);
        }
    }
}

fn build_routes(live: &BTreeMap<String, LiveApp>) -> Result<Routes, nimbus_gateway::RouteConflict> {
    Routes::build(
        live.values()
            .flat_map(|app| app.routes.iter())
            .map(|(route, owner, target)| (route.clone(), owner.clone(), target.clone())),
    )
}

fn check_components(app: &App, components: &BTreeMap<String, String>) -> Result<(), ControlError> {
    for function in &app.functions {
        let digest = components.get(&function.name).ok_or_else(|| {
            ControlError::BadRequest(format!(
                "no component given for function `{}`",
                function.name
            ))
        })?;
        validate_digest(digest)?;
    }
    for name in components.keys() {
        if !app.functions.iter().any(|f| &f.name == name) {
            return Err(ControlError::BadRequest(format!(
                "component given for `{name}`, which the manifest does not declare"
            )));
        }
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
