//! Hostile and broken functions: each is stopped by its own limits with a clear status while
//! a well-behaved function keeps serving.

use std::time::{Duration, Instant};

use nimbus_cli::client::LogQuery;

use crate::guests;
use crate::harness::{Nimbus, logs, manifest, upstream};
use crate::logs::lines_until;

async fn with_victim(extra: &str, hostile: &str) -> Nimbus {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("victim", "hello", &["/victim"], "")
        .await;
    nimbus
        .deploy_guest("hostile", hostile, &["/hostile"], extra)
        .await;
    nimbus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_gets_504_and_others_keep_serving() {
    let nimbus = with_victim("timeout_ms = 2000\ncpu_time_ms = 300", "loop").await;
    let url = format!("{}/hostile", nimbus.gateway_url);
    let http = nimbus.http.clone();
    let started = Instant::now();
    let looping = tokio::spawn(async move { http.get(url).send().await.unwrap() });

    // While the loop burns CPU, the victim answers every request.
    let mut victim_ok = 0;
    while !looping.is_finished() {
        let resp = nimbus.get("/victim").await;
        assert_eq!(resp.status(), 200);
        victim_ok += 1;
    }
    let resp = looping.await.unwrap();
    assert_eq!(resp.status(), 504);
    let body = resp.text().await.unwrap();
    assert!(body.contains("CPU budget of 300 ms"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped by CPU budget, not timeout"
    );
    assert!(victim_ok > 0);
    nimbus.stop().await;
}

#[tokio::test]
async fn a_slow_function_gets_504_at_its_timeout() {
    let nimbus = with_victim("timeout_ms = 200", "sleep").await;
    let started = Instant::now();
    let resp = nimbus
        .http
        .get(format!("{}/hostile", nimbus.gateway_url))
        .header("x-sleep-ms", "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().contains("timeout of 200 ms"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(nimbus.get("/victim").await.status(), 200);
    nimbus.stop().await;
}

#[tokio::test]
async fn a_memory_bomb_is_capped() {
    let nimbus = with_victim("memory_mb = 16", "membomb").await;
    let resp = nimbus.get("/hostile").await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    if status == 200 {
        // malloc failed at the cap and the guest reported how far it got.
        let mib: u64 = body
            .trim()
            .strip_prefix("allocated ")
            .and_then(|s| s.strip_suffix(" MiB"))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected body {body}"));
        assert!(mib <= 16, "allocated {mib} MiB past a 16 MiB cap");
    } else {
        assert_eq!(status, 500, "{body}");
    }
    assert_eq!(nimbus.get("/victim").await.status(), 200);
    nimbus.stop().await;
}

#[tokio::test]
async fn a_trap_gets_500_without_internals() {
    let nimbus = with_victim("", "trap").await;
    let resp = nimbus.get("/hostile").await;
    assert_eq!(resp.status(), 500);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap();
    assert_eq!(body, format!("function trapped (request id {id})\n"));
    assert!(
        logs().contains(&id),
        "the trap is in the platform log under the request id"
    );
    assert_eq!(nimbus.get("/victim").await.status(), 200);
    nimbus.stop().await;
}

#[tokio::test]
async fn env_is_visible_and_stdout_is_logged_with_the_request_id() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest(
            "envapp",
            "env",
            &["/env"],
            "[function.env]\nGREETING = \"hej\"",
        )
        .await;
    let resp = nimbus.get("/env").await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(resp.text().await.unwrap(), "GREETING=hej\n");
    let log = logs();
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("stdout-line GREETING=hej"))
        .unwrap_or_else(|| panic!("no tagged stdout line for {id}"));
    assert!(
        line.contains("stream=\"stdout\"") || line.contains("stream=stdout"),
        "{line}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&id) && l.contains("stderr-line"))
    );
    nimbus.stop().await;
}

#[tokio::test]
async fn outbound_http_is_limited_to_allowed_hosts() {
    let upstream_addr = upstream("upstream says hi", Duration::ZERO).await;

    let nimbus = Nimbus::start().await;
    let outbound = guests::c("outbound");
    let allowed = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
        upstream_addr.port()
    );
    nimbus
        .deploy(
            &manifest("o", "outbound", &["/out"], &allowed),
            &[("outbound", &outbound)],
        )
        .await
        .unwrap();
    let call = |target: String| {
        let http = nimbus.http.clone();
        let url = format!("{}/out", nimbus.gateway_url);
        async move {
            http.get(url)
                .header("x-target", target)
                .send()
                .await
                .unwrap()
        }
    };
    let ok = call(format!("http://127.0.0.1:{}/x", upstream_addr.port())).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "upstream says hi");

    // Same host, other port: denied before any connection, and the guest sees why.
    let denied = call("http://127.0.0.1:1/x".to_owned()).await;
    assert_eq!(denied.status(), 502);
    let body = denied.text().await.unwrap().to_lowercase();
    assert!(body.contains("denied"), "{body}");
    nimbus.stop().await;
}

#[tokio::test]
async fn the_js_hello_component_serves() {
    let nimbus = Nimbus::start().await;
    let js = guests::js("guests/js/hello.js");
    nimbus
        .deploy(&manifest("js", "hello", &["/js"], ""), &[("hello", &js)])
        .await
        .unwrap();
    let resp = nimbus.get("/js").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from nimbus js\n");
    nimbus.stop().await;
}

/// Unbounded recursion of both kinds: `deep` runs out of its shadow stack in linear memory (an
/// out-of-bounds access), `overflow` out of the native stack the engine allows
/// (`max_wasm_stack`). Each gets a 500 whose body names no internals, its log names the
/// cause, and the victim keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps_with_500_and_others_keep_serving() {
    for (guest, cause) in [
        ("deep", "out of bounds"),
        ("overflow", "call stack exhausted"),
    ] {
        let nimbus = with_victim("", guest).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let resp = nimbus.get("/hostile").await;
            assert_eq!(resp.status(), 500, "{guest}");
            ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
            let body = resp.text().await.unwrap();
            assert!(body.contains("function trapped"), "{guest}: {body}");
            assert!(!body.contains("stack"), "{guest}: internals leaked: {body}");
            assert_eq!(nimbus.get("/victim").await.status(), 200);
        }
        let query = LogQuery {
            invocation: Some(&ids[2]),
            ..LogQuery::default()
        };
        let lines = lines_until(&nimbus, &query, |l| !l.is_empty()).await;
        assert!(
            lines[0].message.contains(cause),
            "{guest}: expected `{cause}` in {lines:?}"
        );
        nimbus.stop().await;
    }
}

/// A function that streams forever is cut off at its `max_response_bytes`: the client sees
/// an incomplete body (never a complete 200), and the victim keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_response_is_cut_off_at_max_response_bytes() {
    let nimbus = with_victim(
        "max_response_bytes = 1048576\ntimeout_ms = 20000",
        "firehose",
    )
    .await;
    let started = Instant::now();
    let mut resp = nimbus.get("/hostile").await;
    assert_eq!(resp.status(), 200);
    let mut received = 0usize;
    let outcome = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        outcome.is_err(),
        "the body completed after {received} bytes"
    );
    assert!(received <= 1 << 20, "{received} bytes passed a 1 MiB limit");
    assert!(received >= 512 << 10, "cut off early, at {received} bytes");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut off by the timeout, not the limit"
    );
    assert_eq!(nimbus.get("/victim").await.status(), 200);
    nimbus.stop().await;
}
