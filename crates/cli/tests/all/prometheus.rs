//! A real Prometheus server scrapes `/metrics`: the bearer token in its scrape config, its own
//! OpenMetrics parser, and PromQL queries over what it stored, after known traffic.
//!
//! Prometheus is unpacked from Debian's package by `scripts/setup-toolchains.sh` (not installed
//! as a service); `NIMBUS_PROMETHEUS` points the test at another binary.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::{Nimbus, manifest};

fn prometheus_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NIMBUS_PROMETHEUS") {
        return path.into();
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let path = cache.join("nimbus/prometheus/usr/bin/prometheus");
    assert!(
        path.exists(),
        "no Prometheus at {} — run scripts/setup-toolchains.sh",
        path.display()
    );
    path
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PromQL instant query; the value of its only sample, if it has one.
async fn query(http: &reqwest::Client, prometheus: &str, promql: &str) -> Option<String> {
    let resp = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    let result = body["data"]["result"].as_array()?;
    match result.as_slice() {
        [sample] => sample["value"][1].as_str().map(str::to_owned),
        _ => None,
    }
}

/// What Prometheus says about its scrapes of Nimbus (health and last error), for failures.
async fn targets(http: &reqwest::Client, prometheus: &str) -> String {
    match http
        .get(format!("{prometheus}/api/v1/targets"))
        .send()
        .await
    {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(e) => format!("(targets unavailable: {e})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_and_queries_the_metrics() {
    let binary = prometheus_binary();
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    nimbus
        .deploy(&manifest("shop", "api", &["/api"], ""), &[("api", &hello)])
        .await
        .unwrap();
    for _ in 0..3 {
        let resp = nimbus.get("/api").await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), &nimbus.token).unwrap();
    let api = nimbus.api.base().trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: nimbus\n    metrics_path: /metrics\n\
         \x20   authorization:\n      type: Bearer\n      credentials_file: {token}\n\
         \x20   static_configs:\n      - targets: ['{api}']\n",
        token = dir.path().join("token").display(),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    // Prometheus cannot report a port it picked itself: take a free one and hand it over (the
    // test fails, not hangs, if another process grabs it in between).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut child = Server(
        Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display())),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // Until Prometheus has scraped the three calls (it scrapes every second).
    let invocations = r#"nimbus_invocations_total{job="nimbus",app="shop",function="api",trigger="http",outcome="ok"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if query(&http, &prometheus, invocations).await.as_deref() == Some("3") {
            break;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
            panic!("Prometheus exited ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never stored 3 invocations; its targets: {}",
            targets(&http, &prometheus).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The scrape is healthy, and the histogram and GB-s series parse as what they are.
    assert_eq!(
        query(&http, &prometheus, r#"up{job="nimbus"}"#)
            .await
            .as_deref(),
        Some("1")
    );
    let count = r#"nimbus_invocation_duration_seconds_count{app="shop",function="api"}"#;
    assert_eq!(query(&http, &prometheus, count).await.as_deref(), Some("3"));
    let p99 = r#"histogram_quantile(0.99, sum by (le) (nimbus_invocation_duration_seconds_bucket{app="shop",function="api"}))"#;
    let p99: f64 = query(&http, &prometheus, p99)
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99} s");
    let gb_s = r#"nimbus_billed_gb_seconds_total{app="shop",function="api"}"#;
    let gb_s: f64 = query(&http, &prometheus, gb_s)
        .await
        .unwrap()
        .parse()
        .unwrap();
    // Three invocations of 128 MB, each billed at least 1 ms.
    assert!(gb_s >= 3.0 * 0.125 * 0.001, "{gb_s}");
    nimbus.stop().await;
}
