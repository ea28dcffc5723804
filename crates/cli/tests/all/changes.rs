//! Object-storage and key-value change triggers: the upload-pipeline example driven with the
//! aws CLI (an upload to a bucket triggers a function that writes a derived object), and a
//! key-value trigger with a prefix filter.

use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::Nimbus;
use crate::objects::Aws;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_to_a_bucket_triggers_a_function_that_writes_a_derived_object() {
    let (manifest, component) = guests::example("upload-pipeline", "summarize");
    let nimbus = Nimbus::start().await;
    let aws = Aws::for_nimbus(&nimbus).await;

    // The watched bucket must exist: the deploy names it.
    let err = nimbus
        .deploy(&manifest, &[("summarize", &component)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bucket `incoming`, which does not exist"),
        "{err}"
    );
    aws.run(&["s3", "mb", "s3://incoming"]).await;
    aws.run(&["s3", "mb", "s3://summaries"]).await;
    nimbus
        .deploy(&manifest, &[("summarize", &component)])
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("photo.png");
    std::fs::write(&png, b"\x89PNG not really").unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "first line\nsecond line has five words\n").unwrap();
    // Over the aws CLI's 8 MiB threshold: a multipart upload.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "lorem ipsum dolor\n".repeat(600_000)).unwrap();
    aws.run(&["s3", "cp", png.to_str().unwrap(), "s3://incoming/photo.png"])
        .await;
    aws.run(&[
        "s3",
        "cp",
        notes.to_str().unwrap(),
        "s3://incoming/notes.txt",
    ])
    .await;
    aws.run(&["s3", "cp", big.to_str().unwrap(), "s3://incoming/big.txt"])
        .await;

    let summary = |key: &'static str| {
        let aws = &aws;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ls = aws.run(&["s3", "ls", "s3://summaries/"]).await;
                if String::from_utf8_lossy(&ls.stdout).contains(key) {
                    let out = aws
                        .run(&["s3", "cp", &format!("s3://summaries/{key}"), "-"])
                        .await;
                    return serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
                }
                assert!(Instant::now() < deadline, "no summary {key}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let s = summary("notes.txt.json").await;
    assert_eq!(s["key"], "notes.txt");
    assert_eq!(s["lines"], 2);
    assert_eq!(s["words"], 7);
    assert_eq!(s["first_line"], "first line");
    let b = summary("big.txt.json").await;
    assert_eq!(b["bytes"], 18 * 600_000);
    assert_eq!(b["words"], 3 * 600_000);
    assert!(
        b["etag"].as_str().unwrap().ends_with("-2"),
        "multipart ETag: {b}"
    );

    // The suffix filter: the .png never produced an event (it was uploaded first, and events
    // of one trigger are handled oldest first, so it would have been summarised by now).
    let ls = aws.run(&["s3", "ls", "s3://summaries/"]).await;
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("photo"),
        "png summarised"
    );
    // Deletes are not in this trigger's `events`; nothing happens, nothing fails.
    aws.run(&["s3", "rm", "s3://incoming/notes.txt"]).await;
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_changes_under_a_prefix_trigger_a_function() {
    let component = guests::js_world("guests/js/events.js", "event-guest");
    let manifest = r#"
[app]
name = "kvwatch"

[[function]]
name = "audit"
component = "audit.wasm"
key_value_stores = ["events"]

[[trigger.kv]]
function = "audit"
store = "sessions"
prefix = "user:"
"#;
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(manifest, &[("audit", &component)])
        .await
        .unwrap();
    nimbus
        .api
        .kv_set("sessions", "other:1", b"x".to_vec(), None)
        .await
        .unwrap();
    nimbus
        .api
        .kv_set("sessions", "user:1", b"ada".to_vec(), None)
        .await
        .unwrap();
    assert!(nimbus.api.kv_delete("sessions", "user:1").await.unwrap());

    // The recorder stores each event under its id; wait for two.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let page = nimbus.api.kv_list("events", "", None, 100).await.unwrap();
        if page.keys.len() >= 2 {
            let mut events = Vec::new();
            for key in page.keys {
                let v = nimbus.api.kv_get("events", &key).await.unwrap().unwrap();
                events.push(serde_json::from_slice::<serde_json::Value>(&v).unwrap());
            }
            break events;
        }
        assert!(Instant::now() < deadline, "kv change events not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Keys are UUIDv7 ids, so the listing is in event order.
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("dev.nimbus.kv.set".into(), "user:1".into()),
            ("dev.nimbus.kv.deleted".into(), "user:1".into()),
        ],
        "only changes under the prefix, in order"
    );
    assert_eq!(events[0]["source"], "/kv/sessions");
    nimbus.stop().await;
}
