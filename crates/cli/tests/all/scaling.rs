//! Scale to zero: idle functions release their code, and any call — an HTTP request or a
//! trigger — activates it again from the artifact cache; `min_instances` keeps a function warm.

use std::time::{Duration, Instant};

use nimbus_scaling::KeepAlivePolicy;

use crate::guests;
use crate::harness::Nimbus;

const MANIFEST: &str = r#"
[app]
name = "idle"

[[function]]
name = "echo"
component = "echo.wasm"
routes = ["/echo/..."]

[[function]]
name = "pinned"
component = "echo.wasm"
routes = ["/pinned"]
min_instances = 1

[[function]]
name = "worker"
component = "worker.wasm"
key_value_stores = ["bench"]

[[queue]]
name = "jobs"

[[trigger.queue]]
function = "worker"
queue = "jobs"
"#;

async fn residency(nimbus: &Nimbus, function: &str) -> Option<bool> {
    let functions = nimbus.api.functions("idle").await.unwrap();
    functions
        .iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("no function {function}"))
        .resident
}

/// Polls until `function` reports `resident == want` (the reaper runs every 20 ms here).
async fn wait_resident(nimbus: &Nimbus, function: &str, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while residency(nimbus, function).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{function} never became resident={want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_functions_scale_to_zero_and_any_call_wakes_them() {
    let nimbus = Nimbus::start_configured(|config| {
        config.engine.keep_alive = KeepAlivePolicy::Fixed(Duration::from_millis(300));
        config.engine.reap_interval = Some(Duration::from_millis(20));
    })
    .await;
    let echo = guests::c("echo");
    let worker = guests::c_world("eventbench", "event-guest");
    nimbus
        .deploy(
            MANIFEST,
            &[("echo", &echo), ("pinned", &echo), ("worker", &worker)],
        )
        .await
        .unwrap();

    // Deploying leaves every function warm; idle past the keep-alive, they release their code,
    // except the one with min_instances.
    assert_eq!(residency(&nimbus, "echo").await, Some(true));
    wait_resident(&nimbus, "echo", false).await;
    wait_resident(&nimbus, "worker", false).await;
    assert_eq!(residency(&nimbus, "pinned").await, Some(true));

    // An HTTP request activates the released function and is served normally.
    let response = nimbus
        .http
        .post(format!("{}/echo/x", nimbus.gateway_url))
        .body("after a nap")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "after a nap");
    assert_eq!(residency(&nimbus, "echo").await, Some(true));

    // So does a trigger: a queue message reaches the released event function.
    assert_eq!(residency(&nimbus, "worker").await, Some(false));
    let sent_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let sent = nimbus
        .api
        .queue_send(
            "idle",
            "jobs",
            format!("{sent_ns} record").into_bytes(),
            None,
            None,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nimbus
        .api
        .kv_get("bench", &sent.id)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the worker never handled the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // And both go back to zero once idle again; the pinned one never does.
    wait_resident(&nimbus, "echo", false).await;
    wait_resident(&nimbus, "worker", false).await;
    assert_eq!(residency(&nimbus, "pinned").await, Some(true));
    let pinned = nimbus.get("/pinned").await;
    assert_eq!(pinned.status(), 200);
    nimbus.stop().await;
}

const PROVISIONED: &str = r#"
[app]
name = "warm"

[[function]]
name = "count"
component = "count.wasm"
routes = ["/count"]
min_instances = 2
"#;

/// `nimbus_instances_ready` of `warm/count`, from `/metrics`.
async fn ready_instances(nimbus: &Nimbus) -> u64 {
    let metrics = nimbus.api_text("/metrics").await;
    let series = r#"nimbus_instances_ready{app="warm",function="count"} "#;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series}in\n{metrics}"))
        .parse()
        .unwrap()
}

/// Polls until `want` instances are ready (the refill runs in the background).
async fn wait_ready(nimbus: &Nimbus, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = ready_instances(nimbus).await;
        if ready == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} instances ready, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_instances_are_made_ahead_and_each_serves_one_invocation() {
    // The app's instance budget is exactly min_instances, and the ready instances hold all of
    // it: a request can only be served by taking one (admitting an instance of its own would
    // be refused with a 429).
    let nimbus = Nimbus::start_configured(|config| {
        config.engine.max_instances_per_app = Some(2);
    })
    .await;
    let count = guests::c("count");
    nimbus
        .deploy(PROVISIONED, &[("count", &count)])
        .await
        .unwrap();
    assert_eq!(ready_instances(&nimbus).await, 2, "the deploy makes them");

    let mut ids = Vec::new();
    for _ in 0..5 {
        // Each one taken is replaced once its invocation gives the budget back.
        wait_ready(&nimbus, 2).await;
        let response = nimbus.get("/count").await;
        assert_eq!(response.status(), 200);
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        // A fresh instance every time: no state survives from one invocation to the next.
        assert_eq!(response.text().await.unwrap(), "1\n");
    }

    // Made before its request existed, each instance's output still carries its request's id.
    for id in &ids {
        let query = nimbus_cli::client::LogQuery {
            invocation: Some(id),
            ..Default::default()
        };
        let lines = crate::logs::lines_until(&nimbus, &query, |lines| !lines.is_empty()).await;
        let messages: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["call 1"], "request {id}");
        assert!(lines.iter().all(|l| *l.request_id == **id));
    }

    // A redeploy's new version gets the budget its old version's ready instances held.
    nimbus
        .deploy(PROVISIONED, &[("count", &count)])
        .await
        .unwrap();
    wait_ready(&nimbus, 2).await;
    assert_eq!(nimbus.get("/count").await.status(), 200);
    nimbus.stop().await;
}
