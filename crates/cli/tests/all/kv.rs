//! The key-value store end to end: functions through `wasi:keyvalue` (the counter example),
//! users through `/v1/kv`, on each backend.

use std::time::Duration;

use nimbus_cli::server::KvSetting;

use crate::guests;
use crate::harness::Nimbus;

/// Hits `/count/<name>` `n` times at once; returns the counts the function answered.
async fn visit_concurrently(nimbus: &Nimbus, name: &str, n: usize) -> Vec<i64> {
    let visits = (0..n).map(|_| async {
        let resp = nimbus.get(&format!("/count/{name}")).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["count"].as_i64().unwrap()
    });
    futures::future::join_all(visits).await
}

/// The counter example on one backend: atomic under concurrency, visible over REST.
async fn counter_on(kv: KvSetting) {
    let (manifest, component) = guests::example("counter-js", "counter");
    let nimbus = Nimbus::start_with_kv(kv).await;
    // A unique counter name: the Redis and NATS backends outlive the test.
    let name = format!("home-{}", uuid::Uuid::now_v7().simple());
    nimbus
        .deploy(&manifest, &[("counter", &component)])
        .await
        .unwrap();

    for expected in 1..=3 {
        let body: serde_json::Value = nimbus
            .get(&format!("/count/{name}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["count"], expected, "{body}");
    }
    // 20 concurrent visits: every one counted once, each sees a distinct value.
    let mut seen = visit_concurrently(&nimbus, &name, 20).await;
    seen.sort_unstable();
    assert_eq!(seen, (4..=23).collect::<Vec<i64>>());

    let counts: serde_json::Value = nimbus.get("/counts").await.json().await.unwrap();
    assert_eq!(counts[&name], 23, "{counts}");

    // The same key from outside, through the REST API.
    let value = nimbus
        .api
        .kv_get("counters", &format!("count:{name}"))
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some(&b"23"[..]));
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_example_counts_exactly_on_the_embedded_backend_and_survives_restart() {
    counter_on(KvSetting::Embedded).await;

    let (manifest, component) = guests::example("counter-js", "counter");
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("counter", &component)])
        .await
        .unwrap();
    visit_concurrently(&nimbus, "kept", 5).await;
    let nimbus = nimbus.restart().await;
    let body: serde_json::Value = nimbus.get("/count/kept").await.json().await.unwrap();
    assert_eq!(body["count"], 6, "{body}");
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_example_counts_exactly_on_redis() {
    counter_on(KvSetting::Redis("redis://127.0.0.1:6379".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_example_counts_exactly_on_nats_jetstream() {
    counter_on(KvSetting::Nats("nats://127.0.0.1:4222".into())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cannot_open_a_store_it_did_not_declare() {
    let (manifest, component) = guests::example("counter-js", "counter");
    let manifest = manifest.replace(
        r#"key_value_stores = ["counters"]"#,
        r#"key_value_stores = ["other"]"#,
    );
    assert!(manifest.contains(r#"["other"]"#));
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("counter", &component)])
        .await
        .unwrap();
    let resp = nimbus.get("/count/x").await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "key-value store: access-denied", "{body}");

    // No store declared at all: the same.
    let none = manifest.replace(r#"key_value_stores = ["other"]"#, "");
    nimbus
        .deploy(&none, &[("counter", &component)])
        .await
        .unwrap();
    let body: serde_json::Value = nimbus.get("/count/x").await.json().await.unwrap();
    assert_eq!(body["error"], "key-value store: access-denied", "{body}");
    assert_eq!(
        nimbus.api.kv_get("counters", "count:x").await.unwrap(),
        None
    );
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_reads_writes_lists_and_expires_keys() {
    let nimbus = Nimbus::start().await;
    let api = &nimbus.api;

    // Keys may hold '/', spaces, '%', '?' and non-ASCII; values are raw bytes.
    let odd = "users/ada lovelace/100%?x=1#é";
    api.kv_set("people", odd, vec![0, 159, 146, 150], None)
        .await
        .unwrap();
    assert_eq!(
        api.kv_get("people", odd).await.unwrap().as_deref(),
        Some(&[0u8, 159, 146, 150][..])
    );

    // Listing: prefix and cursor, every key exactly once, in order.
    for i in 0..25 {
        api.kv_set("people", &format!("p:{i:02}"), b"x".to_vec(), None)
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = api
            .kv_list("people", "p:", cursor.as_deref(), 10)
            .await
            .unwrap();
        pages += 1;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        keys,
        (0..25).map(|i| format!("p:{i:02}")).collect::<Vec<_>>()
    );

    // Delete: gone, and a second delete says so.
    assert!(api.kv_delete("people", "p:00").await.unwrap());
    assert!(!api.kv_delete("people", "p:00").await.unwrap());
    assert_eq!(api.kv_get("people", "p:00").await.unwrap(), None);

    // TTL: readable before, gone after.
    api.kv_set("people", "session", b"s".to_vec(), Some(1))
        .await
        .unwrap();
    assert!(api.kv_get("people", "session").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.kv_get("people", "session").await.unwrap(), None);
    nimbus.stop().await;
}

/// Sends `request` as written (no client normalises its path) and returns the status line
/// and body.
async fn raw(addr: std::net::SocketAddr, request: String) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cannot_reach_another_store_through_dot_segments() {
    let nimbus = Nimbus::start().await;
    nimbus
        .api
        .kv_set("victim", "k", b"original".to_vec(), None)
        .await
        .unwrap();

    // The client refuses to send what a URL library would resolve elsewhere.
    for key in ["../victim/k", "./k", "..", ".", "a/../../victim/k"] {
        let err = nimbus
            .api
            .kv_set("attacker", key, b"x".to_vec(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`.` and `..`"), "{key}: {err}");
    }
    // The server refuses them however they arrive: raw, or percent-encoded.
    let addr = nimbus.running().api_addr;
    for path in [
        "attacker/../victim/k",
        "attacker/%2E%2E/victim/k",
        "attacker/%2e%2e%2Fvictim%2Fk",
        "attacker/./k",
        "attacker/a/%2e/k",
    ] {
        let request = format!(
            "PUT /v1/kv/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx",
            nimbus.token
        );
        let (status, body) = raw(addr, request).await;
        assert!(status.contains(" 400 "), "{path}: {status} {body}");
        assert!(body.contains("`.` or `..` segment"), "{path}: {body}");
    }
    assert_eq!(
        nimbus.api.kv_get("victim", "k").await.unwrap().unwrap(),
        "original"
    );

    // Keys with `/`, `%` and dots inside a segment travel intact.
    for key in ["x/y", "100%/a b", "v1.2/..x/.y", "a//b"] {
        nimbus
            .api
            .kv_set("attacker", key, key.as_bytes().to_vec(), None)
            .await
            .unwrap();
        let value = nimbus.api.kv_get("attacker", key).await.unwrap().unwrap();
        assert_eq!(value, key.as_bytes(), "{key}");
    }
    let listed = nimbus.api.kv_list("attacker", "", None, 100).await.unwrap();
    assert_eq!(listed.keys, ["100%/a b", "a//b", "v1.2/..x/.y", "x/y"]);
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_rejects_bad_input_with_clear_errors() {
    let nimbus = Nimbus::start().await;
    let http = reqwest::Client::new();
    let base = nimbus.api.base().to_owned();
    let put = |path: &str, body: Vec<u8>| {
        http.put(format!("{base}/v1/kv/{path}"))
            .bearer_auth(&nimbus.token)
            .body(body)
            .send()
    };
    let error = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        (
            status,
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    };

    // A value over 1 MiB: 413, and nothing stored. Exactly 1 MiB is fine.
    let (status, message) = error(put("s/big", vec![7; (1 << 20) + 1]).await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(message.contains("1048576"), "{message}");
    assert_eq!(nimbus.api.kv_get("s", "big").await.unwrap(), None);
    assert_eq!(put("s/big", vec![7; 1 << 20]).await.unwrap().status(), 204);

    // A key over 1 KiB: 400.
    let long = "k".repeat(1025);
    let (status, message) = error(put(&format!("s/{long}"), b"v".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(message.contains("1024"), "{message}");

    // Invalid store names: 400 naming the rule.
    let (status, message) = error(put("Bad_Store/k", b"v".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("store name:"), "{message}");

    // A bad TTL, a bad cursor, a bad limit.
    let (status, _) = error(put("s/k?ttl=0", b"v".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400);
    let resp = http
        .get(format!("{base}/v1/kv/s?prefix=a&cursor=zzz"))
        .bearer_auth(&nimbus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{base}/v1/kv/s?limit=5000"))
        .bearer_auth(&nimbus.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // No token, wrong token: 401.
    let resp = http
        .get(format!("{base}/v1/kv/s/big"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{base}/v1/kv/s/big"))
        .bearer_auth("nmb_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Whatever is wrong, the error is the documented JSON body: a query value that does not
    // parse, an unknown path, a method a path does not have. Unknown parameters are ignored.
    for (method, path, status, code) in [
        ("GET", "/v1/kv/s?limit=abc", 400, "bad_request"),
        ("GET", "/v1/kv/s?limit=-1", 400, "bad_request"),
        ("GET", "/v1/logs?limit=many", 400, "bad_request"),
        ("GET", "/v1/nothing/here", 404, "not_found"),
        ("POST", "/v1/kv/s/k", 405, "method_not_allowed"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&nimbus.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
    }
    for path in ["/v1/kv/s?limit=5&colour=blue", "/v1/usage?colour=blue"] {
        let resp = http
            .get(format!("{base}{path}"))
            .bearer_auth(&nimbus.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // The auth scheme is case-insensitive.
    let resp = http
        .get(format!("{base}/v1/kv/s/big"))
        .header("authorization", format!("bearer {}", nimbus.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_example_creates_reads_updates_conditionally_and_deletes() {
    let (manifest, component) = guests::example("crud-py", "items");
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("items", &component)])
        .await
        .unwrap();
    let url = |path: &str| format!("{}{path}", nimbus.gateway_url);
    let http = &nimbus.http;

    let created = http
        .post(url("/items"))
        .body(r#"{"title": "buy milk", "done": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/items/1");
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let body: serde_json::Value = created.json().await.unwrap();
    assert_eq!(body["id"], "1");
    assert_eq!(body["title"], "buy milk");
    http.post(url("/items"))
        .body(r#"{"title": "call Ada"}"#)
        .send()
        .await
        .unwrap();

    let read = http.get(url("/items/1")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);
    let list: serde_json::Value = http
        .get(url("/items"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Ten clients update item 1 at once, all from the same ETag: the store's compare-and-swap
    // lets exactly one win; the others get 412 and nothing of theirs is stored.
    let updates = (0..10).map(|i| {
        let request = http
            .put(url("/items/1"))
            .header("if-match", &etag)
            .body(format!(r#"{{"title": "edit {i}", "done": true}}"#));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(updates).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        9,
        "{statuses:?}"
    );
    let read: serde_json::Value = http
        .get(url("/items/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        read["title"].as_str().unwrap().starts_with("edit "),
        "{read}"
    );
    // The stale ETag no longer matches.
    let stale = http
        .put(url("/items/1"))
        .header("if-match", &etag)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);

    // Bad input and missing items.
    let bad = http.post(url("/items")).body("[1, 2").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let not_object = http
        .post(url("/items"))
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(not_object.status(), 400);
    assert_eq!(
        http.get(url("/items/99")).send().await.unwrap().status(),
        404
    );

    assert_eq!(
        http.delete(url("/items/2")).send().await.unwrap().status(),
        204
    );
    assert_eq!(
        http.get(url("/items/2")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        http.delete(url("/items/2")).send().await.unwrap().status(),
        404
    );
    // Items are plain keys in the store: readable from outside.
    let stored = nimbus.api.kv_get("items", "item:1").await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&stored).contains("edit "));
    nimbus.stop().await;
}

/// The benchmark guest (C, wit-bindgen bindings of wasi:keyvalue) works and reports timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_guest_times_keyvalue_calls() {
    let nimbus = Nimbus::start().await;
    let component = guests::c_world("kvbench", "nimbus-guest");
    let manifest = crate::harness::manifest(
        "kvbench",
        "kvbench",
        &["/kvbench"],
        r#"key_value_stores = ["bench"]"#,
    );
    nimbus
        .deploy(&manifest, &[("kvbench", &component)])
        .await
        .unwrap();
    for op in ["get", "set", "increment"] {
        let resp = nimbus.get(&format!("/kvbench?op={op}&n=50")).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["op"], op);
        assert_eq!(body["n"], 50);
        let (p50, max) = (
            body["p50_ns"].as_u64().unwrap(),
            body["max_ns"].as_u64().unwrap(),
        );
        assert!(p50 > 0 && p50 <= max, "{body}");
    }
    // The counter moved by exactly the 50 increments.
    let counter = nimbus.api.kv_get("bench", "bench-counter").await.unwrap();
    assert_eq!(counter.as_deref(), Some(&b"50"[..]));
    nimbus.stop().await;
}
