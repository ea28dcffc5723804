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
