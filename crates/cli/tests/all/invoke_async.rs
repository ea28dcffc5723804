//! Asynchronous invocation: accepted at once with an id, run later with retries, status and
//! result kept; idempotency keys; destinations on success and failure; kill -9 in the middle.

use std::time::{Duration, Instant};

use nimbus_cli::client::AsyncOptions;
use nimbus_triggers::invoke::{InvocationRecord, InvocationStatus};

use crate::guests;
use crate::harness::Nimbus;

async fn settled(nimbus: &Nimbus, id: &str) -> InvocationRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = nimbus.api.invocation(id).await.unwrap();
        if matches!(
            record.status,
            InvocationStatus::Succeeded | InvocationStatus::Failed
        ) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "invocation {id} never settled: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const APP: &str = r#"
[app]
name = "jobs"

[[queue]]
name = "done"

[[queue]]
name = "failed"

[[function]]
name = "echo"
component = "echo.wasm"
routes = ["/echo"]

[function.async]
on_success = "done"

[[function]]
name = "trap"
component = "trap.wasm"
routes = ["/trap"]

[function.async]
max_attempts = 2
retry_backoff_ms = 100
on_failure = "failed"

[[function]]
name = "record"
component = "record.wasm"
key_value_stores = ["events"]

[function.async]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invocations_run_later_with_retries_results_and_destinations() {
    let nimbus = Nimbus::start().await;
    let record = guests::js_world("guests/js/events.js", "event-guest");
    nimbus
        .deploy(
            APP,
            &[
                ("echo", &guests::c("echo")),
                ("trap", &guests::c("trap")),
                ("record", &record),
            ],
        )
        .await
        .unwrap();
    let api = &nimbus.api;

    // An HTTP function: the result is its response.
    let accepted = api
        .invoke_async(
            "jobs",
            "echo",
            b"hello later".to_vec(),
            AsyncOptions {
                method: Some("POST"),
                path: Some("/echo/x?y=1"),
                ..AsyncOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(!accepted.deduplicated);
    assert!(matches!(
        accepted.record.status,
        InvocationStatus::Queued | InvocationStatus::Running | InvocationStatus::Succeeded
    ));
    let done = settled(&nimbus, &accepted.record.id).await;
    assert_eq!(done.status, InvocationStatus::Succeeded, "{done:?}");
    assert_eq!(done.result_status, Some(200));
    assert_eq!(done.result.as_deref(), Some("hello later"));
    assert_eq!(done.attempts, 1);
    let outcome = api.queue_peek("jobs", "done", 10).await.unwrap();
    assert_eq!(outcome.len(), 1, "on_success got the record");
    let sent: InvocationRecord = serde_json::from_str(outcome[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(sent.id, done.id);

    // An event function: the payload arrives as a CloudEvent whose id is the invocation id.
    let accepted = api
        .invoke_async(
            "jobs",
            "record",
            b"{\"n\":1}".to_vec(),
            AsyncOptions {
                content_type: Some("application/json"),
                ..AsyncOptions::default()
            },
        )
        .await
        .unwrap();
    let done = settled(&nimbus, &accepted.record.id).await;
    assert_eq!(done.status, InvocationStatus::Succeeded, "{done:?}");
    let event: serde_json::Value =
        serde_json::from_slice(&api.kv_get("events", &done.id).await.unwrap().unwrap()).unwrap();
    assert_eq!(event["type"], "dev.nimbus.invoke");
    assert_eq!(event["source"], "/apps/jobs/functions/record");
    assert_eq!(event["data"], "{\"n\":1}");
    assert_eq!(event["datacontenttype"], "application/json");

    // A function that always traps: retried, then failed, reported to on_failure.
    let accepted = api
        .invoke_async("jobs", "trap", Vec::new(), AsyncOptions::default())
        .await
        .unwrap();
    let failed = settled(&nimbus, &accepted.record.id).await;
    assert_eq!(failed.status, InvocationStatus::Failed, "{failed:?}");
    assert_eq!(failed.attempts, 2);
    assert!(
        failed.error.as_deref().unwrap().contains("trapped"),
        "{failed:?}"
    );
    // The outcome is in the destination by the time the record says settled.
    let outcome = api.queue_peek("jobs", "failed", 10).await.unwrap();
    assert_eq!(outcome.len(), 1, "on_failure got the record");
    let sent: InvocationRecord = serde_json::from_str(outcome[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(
        (sent.id.as_str(), sent.status),
        (failed.id.as_str(), InvocationStatus::Failed)
    );

    // Idempotency: a repeat with the same key gets the first invocation back, not a new run.
    let key = AsyncOptions {
        idempotency_key: Some("order-42"),
        method: Some("POST"),
        path: Some("/echo"),
        ..AsyncOptions::default()
    };
    let first = api
        .invoke_async("jobs", "echo", b"1".to_vec(), key)
        .await
        .unwrap();
    let key = AsyncOptions {
        idempotency_key: Some("order-42"),
        method: Some("POST"),
        path: Some("/echo"),
        ..AsyncOptions::default()
    };
    let again = api
        .invoke_async("jobs", "echo", b"2".to_vec(), key)
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.record.id, first.record.id);
    assert_eq!(
        settled(&nimbus, &first.record.id).await.result.as_deref(),
        Some("1")
    );

    // Bad input.
    let err = api
        .invoke_async("jobs", "nope", Vec::new(), AsyncOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no function `nope`"), "{err}");
    let err = api.invocation("no-such-id").await.unwrap_err().to_string();
    assert!(err.contains("no invocation"), "{err}");
    nimbus.stop().await;
}

/// The `nimbus` binary: `invoke --async` and `invocations show --wait`; then kill -9 in the
/// middle of 400 asynchronous invocations (sent with idempotency keys, so a send repeated
/// around the crash is not run twice): after the restart every accepted invocation succeeds.
#[test]
fn kill_9_mid_way_through_async_invocations_loses_none() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use crate::cli::Up;
    use crate::queues::eventually;

    const N: usize = 400;
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path());
    let app = data.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    // The queue-worker example's handler: records order:<id> and counts its runs.
    let (_, component) = guests::example("queue-worker", "worker");
    std::fs::copy(&component, app.join("record.wasm")).unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        "[app]\nname = \"jobs\"\n\n[[function]]\nname = \"record\"\ncomponent = \"record.wasm\"\nkey_value_stores = [\"orders\"]\n\n[function.async]\n",
    )
    .unwrap();
    up.ok(&["deploy", "--no-build", app.to_str().unwrap()]);

    let id = up.ok(&[
        "invoke",
        "jobs/record",
        "--async",
        "-d",
        "{\"order\":\"cli\",\"amount\":1}",
    ]);
    let id = id.trim();
    let shown: serde_json::Value =
        serde_json::from_str(&up.ok(&["invocations", "show", id, "--wait", "--json"])).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["attempts"], 1);
    let text = up.ok(&["invocations", "show", id]);
    assert!(text.contains("Succeeded after 1 attempt"), "{text}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = Arc::new(Mutex::new(up.api()));
    let accepted = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (api, accepted, next) = (api.clone(), accepted.clone(), next.clone());
        senders.push(rt.spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    return;
                }
                loop {
                    let (url, token) = api.lock().unwrap().clone();
                    let sent = http
                        .post(format!("{url}/v1/apps/jobs/functions/record/invocations"))
                        .bearer_auth(token)
                        .header("idempotency-key", format!("job-{i}"))
                        .body(format!("{{\"order\":\"job-{i}\",\"amount\":1}}"))
                        .send()
                        .await;
                    if let Ok(r) = sent
                        && r.status() == 202
                        && let Ok(body) = r.json::<serde_json::Value>().await
                    {
                        let id = body["id"].as_str().unwrap().to_owned();
                        accepted.lock().unwrap().insert(i, id);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(120),
        "half the invocations accepted",
        || (accepted.lock().unwrap().len() >= N / 2).then_some(()),
    );
    up.kill_9_and_restart();
    *api.lock().unwrap() = up.api();
    for s in senders {
        rt.block_on(s).unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), N);

    let (url, token) = up.api();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut attempts_over_one = 0;
    for (i, id) in &accepted {
        let record: serde_json::Value =
            eventually(Duration::from_secs(120), "invocation settled", || {
                let r: serde_json::Value = rt
                    .block_on(async {
                        http.get(format!("{url}/v1/invocations/{id}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                    })
                    .unwrap();
                (r["status"] == "succeeded" || r["status"] == "failed").then_some(r)
            });
        assert_eq!(record["status"], "succeeded", "invocation {i}: {record}");
        if record["attempts"].as_u64().unwrap() > 1 {
            attempts_over_one += 1;
        }
        let event = rt.block_on(async {
            http.get(format!("{url}/v1/kv/orders/order:job-{i}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(event, 200, "invocation {i} ({id}) never ran");
    }
    let runs: usize = rt.block_on(async {
        http.get(format!("{url}/v1/kv/orders/count:processed"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap()
    });
    println!(
        "{N} async invocations accepted across a kill -9, all succeeded ({} s to settle); {} handler runs for {} invocations → {} duplicate runs; {attempts_over_one} recorded more than one attempt",
        started.elapsed().as_secs(),
        runs,
        N + 1,
        runs.saturating_sub(N + 1)
    );
}
