//! Event-handler functions (`nimbus:events/handler`), JS and Python, driven through the engine:
//! a CloudEvents-shaped event in, ok or err out, each in a fresh instance under its limits.

use std::sync::Arc;

use nimbus_engine::{Engine, EngineConfig, Event, FunctionSpec, Invocation, InvokeError, Services};
use nimbus_kv::embedded::EmbeddedKv;
use nimbus_kv::{KvBackend, StoreId};
use nimbus_manifest::Limits;

use crate::guests;

struct Setup {
    engine: Engine,
    kv: Arc<dyn KvBackend>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap());
    let engine = Engine::new(
        EngineConfig::new(dir.path().join("cache")),
        Services {
            kv: Some(kv.clone()),
            ..Services::default()
        },
    )
    .unwrap();
    Setup {
        engine,
        kv,
        _dir: dir,
    }
}

fn spec(name: &str, limits: Limits) -> FunctionSpec {
    FunctionSpec {
        tenant: "default".into(),
        app: "events".into(),
        function: name.into(),
        version: 1,
        limits,
        env: Default::default(),
        allowed_outbound_hosts: Vec::new(),
        key_value_stores: vec!["events".into()],
        config: Default::default(),
        secrets: Vec::new(),
        buckets: Vec::new(),
        queues: Vec::new(),
    }
}

fn event(id: &str, ty: &str) -> Event {
    Event {
        id: id.into(),
        source: "/queues/orders".into(),
        ty: ty.into(),
        subject: Some("order-7".into()),
        time: Some("2026-11-24T03:00:00Z".into()),
        datacontenttype: Some("application/json".into()),
        data: Some(br#"{"total":42}"#.to_vec()),
        extensions: vec![("attempt".into(), "1".into())],
    }
}

fn invocation(id: &str) -> Invocation {
    Invocation::new(id.into(), nimbus_engine::TriggerKind::Queue)
}

async fn recorded(kv: &Arc<dyn KvBackend>, id: &str) -> serde_json::Value {
    let value = kv
        .get(&StoreId::new("default", "events"), id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("event {id} was not recorded"));
    serde_json::from_slice(&value).unwrap()
}

async fn handles_events(component: std::path::PathBuf, lang: &str) {
    let s = setup();
    let loaded = s.engine.load(&std::fs::read(&component).unwrap()).unwrap();
    let function = s
        .engine
        .prepare_event(&loaded, spec(lang, Limits::default()))
        .unwrap();
    function.warm_up().await.unwrap();

    for i in 0..3 {
        let id = format!("{lang}-{i}");
        let result = function
            .handle(event(&id, "dev.nimbus.queue.message"), invocation(&id))
            .await
            .unwrap();
        assert_eq!(result, Ok(()));
        let record = recorded(&s.kv, &id).await;
        assert_eq!(record["lang"], lang);
        assert_eq!(record["source"], "/queues/orders");
        assert_eq!(record["type"], "dev.nimbus.queue.message");
        assert_eq!(record["subject"], "order-7");
        assert_eq!(record["time"], "2026-11-24T03:00:00Z");
        assert_eq!(record["datacontenttype"], "application/json");
        assert_eq!(record["data"], r#"{"total":42}"#);
        assert_eq!(record["extensions"]["attempt"], "1");
    }

    // Optional attributes absent.
    let bare = Event {
        id: format!("{lang}-bare"),
        source: "/cron/nightly".into(),
        ty: "dev.nimbus.cron.tick".into(),
        ..Event::default()
    };
    assert_eq!(
        function.handle(bare, invocation("bare")).await.unwrap(),
        Ok(())
    );
    let record = recorded(&s.kv, &format!("{lang}-bare")).await;
    assert_eq!(record["data"], serde_json::Value::Null);
    assert_eq!(record["subject"], serde_json::Value::Null);

    // The handler's own failure comes back as err, distinct from a trap.
    let failed = function
        .handle(
            event(&format!("{lang}-fail"), "test.fail"),
            invocation("fail"),
        )
        .await
        .unwrap();
    assert_eq!(failed, Err("asked to fail".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_function_handles_events() {
    handles_events(guests::js_world("guests/js/events.js", "event-guest"), "js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_function_handles_events() {
    handles_events(guests::py("guests/py/events", "event-guest"), "python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_returns_is_stopped_by_its_limits() {
    let s = setup();
    let component = guests::js_world("guests/js/events.js", "event-guest");
    let loaded = s.engine.load(&std::fs::read(&component).unwrap()).unwrap();
    let limits = Limits {
        timeout_ms: 1_000,
        cpu_time_ms: 300,
        ..Limits::default()
    };
    let function = s
        .engine
        .prepare_event(&loaded, spec("spin", limits))
        .unwrap();
    let started = std::time::Instant::now();
    let err = function
        .handle(event("spin", "test.spin"), invocation("spin"))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::CpuBudget(300)), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_component_is_not_an_event_handler() {
    let s = setup();
    let loaded = s
        .engine
        .load(&std::fs::read(guests::c("hello")).unwrap())
        .unwrap();
    let err = s
        .engine
        .prepare_event(&loaded, spec("hello", Limits::default()))
        .err()
        .expect("an HTTP component must not prepare as an event handler");
    assert!(
        err.to_string().contains("nimbus:events/handler@0.1.0"),
        "{err}"
    );
}
