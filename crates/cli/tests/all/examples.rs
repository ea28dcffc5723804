//! Every example app, built with its own build command and deployed with its own manifest.

use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::{Nimbus, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bff_fans_out_concurrently_and_merges_json() {
    let delay = Duration::from_millis(400);
    let users = upstream(r#"[{"id":1,"name":"Ada"}]"#, delay).await;
    let orders = upstream(r#"[{"id":7,"user":1,"total":42}]"#, delay).await;
    let (manifest, component) = guests::example("bff", "dashboard");
    let manifest = manifest
        .replace(
            "http://127.0.0.1:9101/users",
            &format!("http://{users}/users"),
        )
        .replace(
            "http://127.0.0.1:9102/orders",
            &format!("http://{orders}/orders"),
        );

    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("dashboard", &component)])
        .await
        .unwrap();
    let started = Instant::now();
    let resp = nimbus.get("/dashboard").await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["users"][0]["name"], "Ada");
    assert_eq!(body["orders"][0]["total"], 42);
    // Two 400 ms upstreams called one after the other would take 800 ms or more.
    assert!(
        elapsed < Duration::from_millis(780),
        "fan-out was not concurrent: {elapsed:?}"
    );

    // One upstream down: 502 naming it.
    let broken = manifest.replace(
        &format!("http://{orders}/orders"),
        "http://127.0.0.1:1/orders",
    );
    nimbus
        .deploy(&broken, &[("dashboard", &component)])
        .await
        .unwrap();
    let resp = nimbus.get("/dashboard").await;
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("orders"),
        "{body}"
    );
    nimbus.stop().await;
}

#[tokio::test]
async fn ssr_renders_html_and_escapes_input() {
    let (manifest, component) = guests::example("ssr", "page");
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("page", &component)])
        .await
        .unwrap();
    let resp = nimbus
        .get("/shop/boots?name=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<h1>Welcome, &lt;script&gt;alert(1)&lt;/script&gt;</h1>"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
    assert!(html.contains("Nimbus boots") && html.contains("$120.00"));
    assert!(html.contains("<code>/shop/boots</code>"));
    nimbus.stop().await;
}

#[tokio::test]
async fn python_hello_answers_with_json() {
    let (manifest, component) = guests::example("hello-py", "hello");
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("hello", &component)])
        .await
        .unwrap();
    let resp = nimbus.get("/py/abc?x=1").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["hello"], "from Python on Nimbus");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/py/abc?x=1");
    nimbus.stop().await;
}
