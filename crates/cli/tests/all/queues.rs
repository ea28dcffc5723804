//! Queues and queue triggers as a user meets them: the queue-worker example deployed with the
//! `nimbus` binary, messages sent, retried, dead-lettered and redriven with `nimbus queue`.

use std::time::{Duration, Instant};

use crate::cli::Up;

/// Polls `check` every 100 ms until it returns `Some`, or fails after `limit` saying `what`.
pub(crate) fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(up: &Up, app: &str) -> serde_json::Value {
    serde_json::from_str(&up.ok(&["queue", "stats", app, "--json"])).unwrap()
}

fn counter(up: &Up, store: &str, key: &str) -> u64 {
    let out = up.nimbus(&["kv", "get", store, key]);
    if !out.status.success() {
        return 0;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn queue<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {stats}"))
}

#[test]
fn failing_messages_land_in_the_dead_letter_queue_and_are_redriven_with_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let deployed = up.ok(&["deploy", "examples/queue-worker"]);
    assert!(
        deployed.contains("deployed queue-worker version 1"),
        "{deployed}"
    );

    for (order, amount) in [
        ("A-1", 42),
        ("A-2", -5),
        ("A-3", 7),
        ("A-4", -1),
        ("A-5", 3),
    ] {
        let body = format!(r#"{{"order":"{order}","amount":{amount}}}"#);
        let id = up.ok(&[
            "queue",
            "send",
            "queue-worker",
            "orders",
            &body,
            "--content-type",
            "application/json",
        ]);
        assert_eq!(id.trim().len(), 36, "a UUID is printed: {id}");
    }

    // The three good orders are processed while the two bad ones are retried: a poison message
    // does not hold up the ones behind it.
    eventually(Duration::from_secs(30), "3 processed orders", || {
        (counter(&up, "orders", "count:processed") == 3).then_some(())
    });
    // After 3 attempts (backoff ~0.2 s, ~0.4 s) the bad ones are in the dead-letter queue.
    let s = eventually(Duration::from_secs(30), "2 dead letters", || {
        let s = stats(&up, "queue-worker");
        let dlq = queue(&s, "orders-dlq");
        (dlq["ready"] == 2).then_some(s)
    });
    let orders = queue(&s, "orders");
    assert_eq!(
        (
            orders["ready"].as_u64(),
            orders["delayed"].as_u64(),
            orders["in_flight"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(orders["consumer"], "worker");
    assert_eq!(orders["dead_letter_queue"], "orders-dlq");
    assert_eq!(queue(&s, "orders-dlq")["dead_letter_for"][0], "orders");
    let table = up.ok(&["queue", "stats", "queue-worker"]);
    assert!(
        table.contains("orders-dlq") && table.contains("worker"),
        "{table}"
    );

    let dead: serde_json::Value =
        serde_json::from_str(&up.ok(&["queue", "peek", "queue-worker", "orders-dlq", "--json"]))
            .unwrap();
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    for m in dead {
        assert_eq!(m["attempts"], 3, "{m}");
        assert_eq!(m["dead_lettered_from"], "queue-worker/orders", "{m}");
        let error = m["last_error"].as_str().unwrap();
        assert!(error.contains("negative amount"), "{error}");
        assert!(m["body"].as_str().unwrap().contains("\"amount\":-"), "{m}");
    }
    let peek = up.ok(&["queue", "peek", "queue-worker", "orders-dlq"]);
    assert!(
        peek.contains("attempts=3") && peek.contains("last error:"),
        "{peek}"
    );

    // Fix the cause, redrive: both are processed, as first attempts again.
    up.ok(&["kv", "set", "orders", "settings:allow-negative", "1"]);
    let moved = up.ok(&["queue", "redrive", "queue-worker", "orders-dlq"]);
    assert_eq!(moved, "moved 2 message(s) from orders-dlq to orders\n");
    eventually(Duration::from_secs(30), "5 processed orders", || {
        (counter(&up, "orders", "count:processed") == 5).then_some(())
    });
    let a4: serde_json::Value =
        serde_json::from_str(&up.ok(&["kv", "get", "orders", "order:A-4"])).unwrap();
    assert_eq!(a4["attempt"], 1, "attempts reset by the redrive: {a4}");
    assert_eq!(a4["amount"], -1);
    let s = stats(&up, "queue-worker");
    assert_eq!(queue(&s, "orders-dlq")["ready"], 0, "{s}");
}

#[test]
fn queue_commands_reject_bad_input_with_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    up.ok(&["deploy", "examples/queue-worker"]);

    let fail = |args: &[&str]| {
        let out = up.nimbus(args);
        assert!(!out.status.success(), "nimbus {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(&["queue", "send", "queue-worker", "order", "x"]);
    assert!(
        err.contains("declares no queue `order`") && err.contains("orders, orders-dlq"),
        "{err}"
    );
    let err = fail(&["queue", "send", "no-such-app", "orders", "x"]);
    assert!(err.contains("app `no-such-app` not found"), "{err}");

    // Over the queue's max_message_bytes (default 256 KiB): refused, nothing stored.
    let big = data.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 256 * 1024 + 1]).unwrap();
    let err = fail(&[
        "queue",
        "send",
        "queue-worker",
        "orders-dlq",
        &format!("@{}", big.display()),
    ]);
    assert!(
        err.contains("exceeds queue `orders-dlq`'s limit of 262144 bytes"),
        "{err}"
    );
    let err = fail(&[
        "queue",
        "send",
        "queue-worker",
        "orders-dlq",
        "x",
        "--delay-ms",
        "99999999999",
    ]);
    assert!(err.contains("delay_ms must be at most"), "{err}");
    let s = stats(&up, "queue-worker");
    assert_eq!(queue(&s, "orders-dlq")["ready"], 0, "{s}");

    // A delayed message waits, then counts as ready.
    up.ok(&[
        "queue",
        "send",
        "queue-worker",
        "orders-dlq",
        "later",
        "--delay-ms",
        "1500",
    ]);
    assert_eq!(
        queue(&stats(&up, "queue-worker"), "orders-dlq")["delayed"],
        1
    );
    eventually(
        Duration::from_secs(10),
        "the delayed message to be ready",
        || (queue(&stats(&up, "queue-worker"), "orders-dlq")["ready"] == 1).then_some(()),
    );

    // Redriving a queue that is nobody's dead-letter queue needs --to.
    let err = fail(&["queue", "redrive", "queue-worker", "orders"]);
    assert!(err.contains("say where to move"), "{err}");
    let err = fail(&[
        "queue",
        "redrive",
        "queue-worker",
        "orders-dlq",
        "--to",
        "orders-dlq",
    ]);
    assert!(err.contains("into itself"), "{err}");
}

/// kill -9 twice — in the middle of a burst of 10,000 sends, and again while the backlog drains
/// — then every accepted message is processed at least once; duplicates are counted.
#[test]
fn kill_9_mid_burst_loses_no_accepted_message() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const TOTAL: usize = 10_000;
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path());
    let (manifest, component) = crate::guests::example("queue-worker", "worker");
    let (_, api) = crate::guests::example("queue-worker", "api");
    let app = data.path().join("app");
    std::fs::create_dir_all(app.join("dist")).unwrap();
    std::fs::copy(&component, app.join("dist/worker.wasm")).unwrap();
    std::fs::copy(&api, app.join("dist/api.wasm")).unwrap();
    let manifest = manifest.replace("concurrency = 4", "concurrency = 16");
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    up.ok(&["deploy", "--no-build", app.to_str().unwrap()]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = Arc::new(Mutex::new(up.api()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let failed_sends = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (api, accepted, next, failed) = (
            api.clone(),
            accepted.clone(),
            next.clone(),
            failed_sends.clone(),
        );
        senders.push(rt.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= TOTAL {
                    return;
                }
                // Until it is accepted: a send cut off by the kill is sent again (a duplicate
                // if the first one had been stored).
                loop {
                    let (url, token) = api.lock().unwrap().clone();
                    let sent = http
                        .post(format!("{url}/v1/apps/queue-worker/queues/orders/messages"))
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"order":"m{i}","amount":1}}"#))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 202 => break,
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    eventually(Duration::from_secs(120), "4,000 accepted sends", || {
        (accepted.load(Ordering::Relaxed) >= 4000).then_some(())
    });
    up.kill_9_and_restart();
    *api.lock().unwrap() = up.api();
    for s in senders {
        rt.block_on(s).unwrap();
    }
    assert_eq!(accepted.load(Ordering::Relaxed), TOTAL);
    // Again while the backlog is being worked off.
    up.kill_9_and_restart();
    *api.lock().unwrap() = up.api();

    let (url, token) = up.api();
    let processed = |key_prefix: &str| -> HashSet<String> {
        rt.block_on(async {
            let http = reqwest::Client::new();
            let mut keys = HashSet::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut req = http
                    .get(format!("{url}/v1/kv/orders"))
                    .bearer_auth(&token)
                    .query(&[("prefix", key_prefix), ("limit", "1000")]);
                if let Some(c) = &cursor {
                    req = req.query(&[("cursor", c)]);
                }
                let page: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
                for k in page["keys"].as_array().unwrap() {
                    keys.insert(k.as_str().unwrap().to_owned());
                }
                match page["cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return keys,
                }
            }
        })
    };
    let started = Instant::now();
    let done = eventually(
        Duration::from_secs(300),
        "every accepted message processed",
        || {
            let keys = processed("order:");
            (keys.len() >= TOTAL).then_some(keys)
        },
    );
    for i in 0..TOTAL {
        assert!(
            done.contains(&format!("order:m{i}")),
            "message m{i} was accepted and never processed"
        );
    }
    let runs = counter(&up, "orders", "count:processed") as usize;
    println!(
        "{TOTAL} accepted, all processed ({} s to drain after the second kill); {} handler runs → {} duplicate deliveries; {} sends retried around the kills",
        started.elapsed().as_secs(),
        runs,
        runs.saturating_sub(TOTAL),
        failed_sends.load(Ordering::Relaxed)
    );
}

/// A flood of sends to a queue nobody drains: past `max_messages` every send is answered at
/// once with 429 and `Retry-After`, nothing more is stored, and it is accepted again once there
/// is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_with_429() {
    let nimbus = crate::harness::Nimbus::start().await;
    nimbus
        .deploy_guest(
            "flood",
            "hello",
            &["/hello"],
            "\n[[queue]]\nname = \"buffer\"\nmax_messages = 5\n\n[[queue]]\nname = \"spill\"\n",
        )
        .await;
    let url = format!(
        "http://{}/v1/apps/flood/queues/buffer/messages",
        nimbus.running().api_addr
    );
    let send = |body: String| {
        nimbus
            .http
            .post(&url)
            .bearer_auth(&nimbus.token)
            .body(body)
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let resp = send(format!("m{i}")).await.unwrap();
        let status = resp.status().as_u16();
        if status == 429 {
            assert_eq!(resp.headers()["retry-after"], "1");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "rejected at once"
            );
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "busy", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[202; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let info = nimbus.api.queue_info("flood", "buffer").await.unwrap();
    assert_eq!(info.ready, 5, "nothing beyond max_messages stored");
    assert_eq!(info.max_messages, 5);

    // Moving messages out makes room again.
    let moved = nimbus
        .api
        .queue_redrive(
            "flood",
            "buffer",
            &nimbus_control::types::RedriveRequest {
                to: Some("spill".into()),
                limit: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.moved, 2);
    assert_eq!(send("again".into()).await.unwrap().status(), 202);
    nimbus.stop().await;
}

/// CloudEvents sent to a queue in either HTTP mode reach the handler as those events, and a
/// handler that never finishes is stopped by its timeout, retried, then dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_pass_through_and_a_hanging_handler_is_dead_lettered() {
    let nimbus = crate::harness::Nimbus::start().await;
    cloudevents_and_dead_letters(nimbus, "ce").await;
}

/// The same on the NATS JetStream queue backend (a fresh app name per run: the stream on the
/// shared server keeps earlier runs' queues).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_triggers_work_on_the_nats_backend() {
    let nimbus = crate::harness::Nimbus::start_with_queues(nimbus_cli::server::QueueSetting::Nats(
        "nats://127.0.0.1:4222".into(),
    ))
    .await;
    let app = format!("ce-{}", uuid::Uuid::now_v7().simple());
    cloudevents_and_dead_letters(nimbus, &app).await;
}

async fn cloudevents_and_dead_letters(nimbus: crate::harness::Nimbus, app: &str) {
    let component = crate::guests::js_world("guests/js/events.js", "event-guest");
    let manifest = r#"
[app]
name = "ce"

[[function]]
name = "handler"
component = "handler.wasm"
key_value_stores = ["events"]
timeout_ms = 1000

[[queue]]
name = "in"

[[queue]]
name = "dead"

[[trigger.queue]]
function = "handler"
queue = "in"
max_attempts = 2
retry_backoff_ms = 100
dead_letter_queue = "dead"
"#;
    let manifest = manifest.replace("name = \"ce\"", &format!("name = \"{app}\""));
    nimbus
        .deploy(&manifest, &[("handler", &component)])
        .await
        .unwrap();
    let url = format!(
        "http://{}/v1/apps/{app}/queues/in/messages",
        nimbus.running().api_addr
    );
    let post = || nimbus.http.post(&url).bearer_auth(&nimbus.token);

    // Structured mode.
    let structured = serde_json::json!({
        "specversion": "1.0",
        "id": "order-1",
        "source": "https://shop.example/orders",
        "type": "com.example.order.created",
        "subject": "order/1",
        "time": "2026-11-24T10:00:00Z",
        "tenantid": "acme",
        "datacontenttype": "application/json",
        "data": {"total": 42}
    });
    let resp = post()
        .header("content-type", "application/cloudevents+json")
        .body(structured.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Binary mode.
    let resp = post()
        .header("ce-specversion", "1.0")
        .header("ce-id", "order-2")
        .header("ce-source", "/orders")
        .header("ce-type", "com.example.order.paid")
        .header("content-type", "text/plain")
        .body("paid")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // A broken binary-mode event is refused.
    let resp = post()
        .header("ce-specversion", "1.0")
        .header("ce-id", "x")
        .body("no type, no source")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post()
        .header("content-type", "application/cloudevents+json")
        .body("{\"specversion\": \"1.0\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let one = kv_json(&nimbus, "events", "order-1").await;
    assert_eq!(one["source"], "https://shop.example/orders");
    assert_eq!(one["type"], "com.example.order.created");
    assert_eq!(one["subject"], "order/1");
    assert_eq!(one["time"], "2026-11-24T10:00:00.000Z");
    assert_eq!(one["datacontenttype"], "application/json");
    assert_eq!(one["data"], "{\"total\":42}");
    assert_eq!(one["extensions"]["tenantid"], "acme");
    assert_eq!(one["extensions"]["attempt"], "1");
    let two = kv_json(&nimbus, "events", "order-2").await;
    assert_eq!(two["type"], "com.example.order.paid");
    assert_eq!(two["data"], "paid");

    // A handler that spins forever: stopped at its timeout (or CPU budget), twice, then
    // dead-lettered.
    let resp = post()
        .header("ce-specversion", "1.0")
        .header("ce-id", "spin-1")
        .header("ce-source", "/test")
        .header("ce-type", "test.spin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = nimbus.api.queue_peek(app, "dead", 10).await.unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "the hanging event was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead[0].attempts, 2);
    let error = dead[0].last_error.clone().unwrap();
    assert!(error.contains("exceeded its"), "{error}");
    assert!(
        dead[0]
            .attributes
            .iter()
            .any(|(k, v)| k == "ce-type" && v == "test.spin"),
        "the event's attributes are kept: {:?}",
        dead[0].attributes
    );
    nimbus.stop().await;
}

/// A function sends to a queue itself (nimbus:queue/sender): the queue-worker example's `api`
/// takes orders over HTTP; a function without the queue in its `queues` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_sends_to_the_queues_it_declares_and_only_those() {
    let (manifest, worker) = crate::guests::example("queue-worker", "worker");
    let (_, api) = crate::guests::example("queue-worker", "api");
    let nimbus = crate::harness::Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("api", &api), ("worker", &worker)])
        .await
        .unwrap();
    let post = |body: &'static str| {
        nimbus
            .http
            .post(format!("{}/orders", nimbus.gateway_url))
            .body(body)
            .send()
    };
    let resp = post(r#"{"order":"W-1","amount":5}"#).await.unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["queued"], "W-1");
    assert_eq!(body["message"].as_str().unwrap().len(), 36);
    let order = kv_json(&nimbus, "orders", "order:W-1").await;
    assert_eq!(order["amount"], 5);
    assert_eq!(order["attempt"], 1);

    // Without `queues = ["orders"]` the same component may not send.
    let denied = manifest.replace("queues = [\"orders\"]", "");
    assert_ne!(denied, manifest);
    nimbus
        .deploy(&denied, &[("api", &api), ("worker", &worker)])
        .await
        .unwrap();
    let resp = post(r#"{"order":"W-2","amount":5}"#).await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "access-denied");
    nimbus.stop().await;
}

/// The JSON value a function wrote under `key` of `store`, once it has.
async fn kv_json(nimbus: &crate::harness::Nimbus, store: &str, key: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = nimbus.api.kv_get(store, key).await.unwrap() {
            return serde_json::from_slice(&v).unwrap();
        }
        assert!(Instant::now() < deadline, "{store}/{key} never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
