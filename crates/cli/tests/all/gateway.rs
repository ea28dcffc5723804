//! The HTTP ingress: ids, 404, limits, keep-alive, slow clients, graceful shutdown.

use std::time::Duration;

use nimbus_gateway::GatewayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Nimbus;

#[tokio::test]
async fn unknown_routes_get_404_with_a_request_id() {
    let nimbus = Nimbus::start().await;
    let resp = nimbus.get("/nothing/here").await;
    assert_eq!(resp.status(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(resp.text().await.unwrap().contains(&id));
    nimbus.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_with_or_without_content_length() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("e", "echo", &["/echo"], "max_body_bytes = 1000")
        .await;
    let url = format!("{}/echo", nimbus.gateway_url);
    let ok = nimbus
        .http
        .post(&url)
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().len(), 1000);

    let big = nimbus
        .http
        .post(&url)
        .body(vec![b'a'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);

    // Chunked: no content-length, so the limit trips mid-stream.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b'b'; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    // The echo guest answers after its first read, so the limit trips after the response head
    // left: the status cannot change any more, and the response must fail rather than
    // arrive as a silently truncated 200.
    match nimbus.http.post(&url).body(body).send().await {
        Ok(resp) if resp.status() == 413 => {}
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            assert!(
                resp.bytes().await.is_err(),
                "over-limit response must not complete"
            );
        }
        Err(_) => {} // connection closed before the head: also not a success
    }
    nimbus.stop().await;
}

#[tokio::test]
async fn huge_headers_get_431_and_the_gateway_keeps_serving() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("h", "hello", &["/h"], "").await;
    let resp = nimbus
        .http
        .get(format!("{}/h", nimbus.gateway_url))
        .header("x-big", "a".repeat(100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(nimbus.get("/h").await.status(), 200);
    nimbus.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("h", "hello", &["/h"], "").await;
    let mut conn = TcpStream::connect(nimbus.running().gateway_addr)
        .await
        .unwrap();
    let request = b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut seen = String::new();
    for _ in 0..3 {
        conn.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(seen.matches("HTTP/1.1 200 OK").count(), 3, "{seen}");
    nimbus.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let nimbus = Nimbus::start_configured(|config| {
        config.listeners.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = TcpStream::connect(nimbus.running().gateway_addr)
        .await
        .unwrap();
    conn.write_all(b"GET /h HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server closes (possibly after a 408); the read ends well before this bound.
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow client was not disconnected");
    // Meanwhile, others are served.
    assert_eq!(nimbus.get("/nothing").await.status(), 404);
    nimbus.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("s", "sleep", &["/sleep"], "max_concurrency = 1")
        .await;
    let url = format!("{}/sleep", nimbus.gateway_url);
    let http = nimbus.http.clone();
    let slow_url = url.clone();
    let in_flight =
        tokio::spawn(async move { http.get(slow_url).header("x-sleep-ms", "700").send().await });
    // With max_concurrency = 1, a 429 proves the slow request is inside the function.
    loop {
        let probe = nimbus
            .http
            .get(&url)
            .header("x-sleep-ms", "0")
            .send()
            .await
            .unwrap();
        if probe.status() == 429 {
            break;
        }
        assert_eq!(probe.status(), 200);
    }
    nimbus.stop().await;
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slept\n");
}

#[tokio::test]
async fn large_bodies_stream_through_both_ways() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("e", "echo", &["/echo"], "max_body_bytes = 33554432")
        .await;
    let body: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = nimbus
        .http
        .post(format!("{}/echo", nimbus.gateway_url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.bytes().await.unwrap();
    assert_eq!(back.len(), body.len());
    assert!(back.as_ref() == body.as_slice(), "echoed body differs");
    nimbus.stop().await;
}

/// Host is optional in HTTP/1.0: such a request is for this server and reaches the routes
/// that name no host. HTTP/1.1 requires it.
#[tokio::test]
async fn an_http_1_0_request_without_host_is_served_and_1_1_gets_400() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("h", "hello", &["/h"], "").await;
    let addr = nimbus.running().gateway_addr;
    let send = |request: &'static [u8]| async move {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    let text = send(b"GET /h HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    let text = send(b"GET /h HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("no Host header"), "{text}");
    nimbus.stop().await;
}

/// `max_waiting` requests wait (first come, first served) for a slot once `max_concurrency`
/// are running; the next one gets 429 with `Retry-After` at once, and a waiter that is not
/// served within `max_wait_ms` gets 429 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_wait_queue_absorbs_a_burst_and_rejects_the_rest_at_once() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest(
            "q",
            "sleep",
            &["/sleep"],
            "max_concurrency = 1\nmax_waiting = 1\nmax_wait_ms = 5000",
        )
        .await;
    let url = format!("{}/sleep", nimbus.gateway_url);
    let send = |ms: &'static str| {
        let request = nimbus.http.get(&url).header("x-sleep-ms", ms).send();
        async move {
            let started = std::time::Instant::now();
            let response = request.await.unwrap();
            (
                response.status().as_u16(),
                response.headers().contains_key("retry-after"),
                started.elapsed(),
            )
        }
    };
    let (a, b, c) = tokio::join!(send("800"), send("800"), send("800"));
    let mut results = vec![a, b, c];
    results.sort_by_key(|r| r.0);
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 200, 429], "{results:?}");
    let (_, retry_after, rejected_in) = results[2];
    assert!(retry_after, "{results:?}");
    assert!(
        rejected_in < std::time::Duration::from_millis(500),
        "the rejection waited for the sleeper: {results:?}"
    );
    // The waiter ran after the first: about two sleeps in all.
    let slowest = results[0].2.max(results[1].2);
    assert!(
        slowest >= std::time::Duration::from_millis(1500),
        "{results:?}"
    );

    // A waiter not served within max_wait_ms gets 429 once it runs out.
    nimbus
        .deploy_guest(
            "q",
            "sleep",
            &["/sleep"],
            "max_concurrency = 1\nmax_waiting = 4\nmax_wait_ms = 200",
        )
        .await;
    let (a, b) = tokio::join!(send("1500"), send("1500"));
    let mut results = vec![a, b];
    results.sort_by_key(|r| r.0);
    assert_eq!((results[0].0, results[1].0), (200, 429), "{results:?}");
    let waited = results[1].2;
    assert!(
        waited >= std::time::Duration::from_millis(200)
            && waited < std::time::Duration::from_millis(1400),
        "{results:?}"
    );
    nimbus.stop().await;
}

/// One request on `conn` (keep-alive): its status and how long the whole response took.
async fn exchange(conn: &mut TcpStream, path: &str) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-sleep-ms: 0\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: Option<usize> = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        });
        // A function's response is chunked, the gateway's own have a length.
        let complete = match length {
            Some(length) => body.len() >= length,
            None => body.ends_with("0\r\n\r\n"),
        };
        if complete {
            let status = head[9..12].parse().unwrap();
            return (status, started.elapsed());
        }
    }
}

/// A connection the gateway turned away (429) waits `rejection_pause` before its next request
/// is read, so a client ignoring `Retry-After` cannot make it answer at full speed; the 429
/// itself, and a fresh connection's, are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_turned_away_waits_before_its_next_request_is_read() {
    let pause = Duration::from_millis(500);
    let nimbus = Nimbus::start_with_gateway(GatewayConfig {
        rejection_pause: pause,
        ..GatewayConfig::default()
    })
    .await;
    nimbus
        .deploy_guest("s", "sleep", &["/sleep"], "max_concurrency = 1")
        .await;
    let (http, url) = (nimbus.http.clone(), format!("{}/sleep", nimbus.gateway_url));
    let sleeper = move || {
        let request = http.get(&url).header("x-sleep-ms", "4000").send();
        tokio::spawn(async move { request.await.unwrap().status().as_u16() })
    };
    let mut busy = sleeper();
    let addr = nimbus.running().gateway_addr;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Fresh connections until one is turned away: the sleeper holds the only slot. (If a
    // probe held it when the sleeper arrived, the sleeper was turned away: send it again.)
    let mut conn = loop {
        assert!(std::time::Instant::now() < deadline, "never turned away");
        if busy.is_finished() {
            assert_eq!((&mut busy).await.unwrap(), 429);
            busy = sleeper();
        }
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let (status, took) = exchange(&mut conn, "/sleep").await;
        if status == 429 {
            assert!(took < pause, "a first 429 took {took:?}");
            break conn;
        }
        assert_eq!(status, 200);
    };
    let (status, took) = exchange(&mut conn, "/sleep").await;
    assert_eq!(status, 429);
    assert!(took >= pause, "asked again at once, answered in {took:?}");
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    let (status, took) = exchange(&mut fresh, "/sleep").await;
    assert_eq!(status, 429);
    assert!(took < pause, "a fresh connection waited {took:?}");
    assert_eq!(busy.await.unwrap(), 200);
    nimbus.stop().await;
}
