//! The hostile-function suite: table growth, outbound-connection floods and app-level instance
//! budgets, each stopped by its own limit, and the short CI version of `bench/hostile_bench.py`
//! — every attack at once beside a victim under load, which must see no errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::guests;
use crate::harness::Nimbus;

/// `tablebomb` grows a table 4,096 elements at a time until `table.grow` fails. On the
/// pooling allocator a slot bounds it; on the on-demand allocator only the store limiter does
/// (without it the guest grows the table until the host runs out of memory). Both stop at
/// the same size: the largest multiple of 4,096 within `max_table_elements` (100,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_bomb_stops_at_the_table_limit_on_both_allocators() {
    for pooling in [true, false] {
        let nimbus = Nimbus::start_configured(|c| c.engine.pooling = Some(pooling)).await;
        nimbus
            .deploy_guest("victim", "hello", &["/victim"], "")
            .await;
        nimbus
            .deploy_guest(
                "hostile",
                "tablebomb",
                &["/hostile"],
                "timeout_ms = 5000\ncpu_time_ms = 2000",
            )
            .await;
        assert_eq!(nimbus.running().pooling, pooling);
        let resp = nimbus.get("/hostile").await;
        assert_eq!(resp.status(), 200, "pooling {pooling}");
        assert_eq!(
            resp.text().await.unwrap(),
            "table grew to 98304 elements\n",
            "pooling {pooling}"
        );
        assert_eq!(nimbus.get("/victim").await.status(), 200);
        nimbus.stop().await;
    }
}

/// An upstream that answers every request after `delay` and records the most requests it
/// had in flight at once.
async fn counting_upstream(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_out = peak.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let (in_flight, peak) = (in_flight.clone(), peak.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, peak_out)
}

/// `outflood` starts 50 outbound requests at once. With `max_outbound_requests = 20` the last
/// 30 fail with `connection-limit-reached` before anything is sent; with
/// `max_outbound_connections = 4` the upstream never sees more than 4 at a time, the rest
/// having waited their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_flood_is_held_to_its_request_and_connection_limits() {
    let (upstream, peak) = counting_upstream(Duration::from_millis(30)).await;
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("victim", "hello", &["/victim"], "")
        .await;
    let extra = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\nmax_outbound_requests = 20\nmax_outbound_connections = 4",
        upstream.port()
    );
    nimbus
        .deploy_guest("hostile", "outflood", &["/hostile"], &extra)
        .await;
    let resp = nimbus
        .http
        .get(format!("{}/hostile", nimbus.gateway_url))
        .header("x-target", format!("http://127.0.0.1:{}/", upstream.port()))
        .header("x-count", "50")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "ok=20\nconnection-limit-reached=30\n"
    );
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "the upstream saw this many requests at once"
    );
    assert_eq!(nimbus.get("/victim").await.status(), 200);

    // The defaults (1,000 requests, 6 at a time) let an ordinary fan-out through.
    let (upstream, peak) = counting_upstream(Duration::from_millis(30)).await;
    let extra = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
        upstream.port()
    );
    nimbus
        .deploy_guest("fanout", "outflood", &["/fanout"], &extra)
        .await;
    let resp = nimbus
        .http
        .get(format!("{}/fanout", nimbus.gateway_url))
        .header("x-target", format!("http://127.0.0.1:{}/", upstream.port()))
        .header("x-count", "30")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok=30\n");
    assert_eq!(peak.load(Ordering::SeqCst), 6);
    nimbus.stop().await;
}

/// With `--max-instances-per-app 2`, an app whose two functions get five slow requests at
/// once runs two and answers the rest 429 with `Retry-After`, however much `max_concurrency`
/// each function has; another app keeps being served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_at_its_instance_budget_gets_429_while_other_apps_serve() {
    let nimbus = Nimbus::start_configured(|c| c.engine.max_instances_per_app = Some(2)).await;
    nimbus
        .deploy_guest("victim", "hello", &["/victim"], "")
        .await;
    let sleep = guests::c("sleep");
    let greedy = "[app]\nname = \"greedy\"\n\n\
        [[function]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nmax_concurrency = 10\n\n\
        [[function]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroutes = [\"/b\"]\nmax_concurrency = 10\n";
    nimbus
        .deploy(greedy, &[("a", &sleep), ("b", &sleep)])
        .await
        .unwrap();
    let calls: Vec<_> = ["/a", "/b", "/a", "/b", "/a"]
        .into_iter()
        .map(|path| {
            let request = nimbus
                .http
                .get(format!("{}{path}", nimbus.gateway_url))
                .header("x-sleep-ms", "1500")
                .send();
            tokio::spawn(async move {
                let resp = request.await.unwrap();
                let retry = resp.headers().get("retry-after").cloned();
                (resp.status().as_u16(), retry, resp.text().await.unwrap())
            })
        })
        .collect();
    // While they run, the other app is unaffected.
    for _ in 0..5 {
        assert_eq!(nimbus.get("/victim").await.status(), 200);
    }
    let mut served = 0;
    for call in calls {
        let (status, retry, body) = call.await.unwrap();
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(retry.unwrap(), "1");
                assert!(body.contains("limit of 2 instances"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(served, 2);
    nimbus.stop().await;
}

/// The expected outcomes of one attacker's requests.
struct Attack {
    app: &'static str,
    guest: &'static str,
    extra: String,
    headers: Vec<(&'static str, String)>,
    /// Statuses the attacker may get.
    statuses: &'static [u16],
}

/// Every attack at once — an infinite loop, a memory bomb, unbounded recursion, table growth,
/// an endless response, an outbound flood, slowloris connections — each from its own app,
/// while a victim app is called by two clients throughout. The victim sees no error and every
/// attacker gets the outcome of its own limit. (Latency is measured by the benchmark, not
/// asserted here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_attack_at_once_the_victim_sees_no_errors() {
    let (upstream, _) = counting_upstream(Duration::from_millis(5)).await;
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("victim", "hello", &["/victim"], "")
        .await;
    let target = format!("http://127.0.0.1:{}/", upstream.port());
    let attacks = [
        Attack {
            app: "loop",
            guest: "loop",
            extra: "timeout_ms = 2000\ncpu_time_ms = 200".into(),
            headers: vec![],
            statuses: &[504],
        },
        Attack {
            app: "membomb",
            guest: "membomb",
            extra: "memory_mb = 32".into(),
            headers: vec![],
            statuses: &[200, 500],
        },
        Attack {
            app: "deep",
            guest: "deep",
            extra: String::new(),
            headers: vec![],
            statuses: &[500],
        },
        Attack {
            app: "tablebomb",
            guest: "tablebomb",
            extra: String::new(),
            headers: vec![],
            statuses: &[200],
        },
        Attack {
            app: "firehose",
            guest: "firehose",
            extra: "max_response_bytes = 1048576".into(),
            headers: vec![],
            statuses: &[200],
        },
        Attack {
            app: "outflood",
            guest: "outflood",
            extra: format!(
                "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\nmax_outbound_requests = 50",
                upstream.port()
            ),
            headers: vec![("x-target", target), ("x-count", "200".into())],
            statuses: &[200],
        },
    ];
    for attack in &attacks {
        let route = format!("/{}", attack.app);
        nimbus
            .deploy_guest(attack.app, attack.guest, &[&route], &attack.extra)
            .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for attack in attacks {
        for _ in 0..2 {
            let (http, stop) = (nimbus.http.clone(), stop.clone());
            let url = format!("{}/{}", nimbus.gateway_url, attack.app);
            let headers = attack.headers.clone();
            let (app, statuses) = (attack.app, attack.statuses);
            attackers.push(tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < 200 {
                    let mut request = http.get(&url);
                    for (name, value) in &headers {
                        request = request.header(*name, value);
                    }
                    let resp = request.send().await.unwrap();
                    let status = resp.status().as_u16();
                    // A cut-off firehose body ends in an error: read what comes.
                    let _ = resp.bytes().await;
                    assert!(statuses.contains(&status), "{app}: unexpected {status}");
                    sent += 1;
                }
                sent
            }));
        }
    }
    // Slowloris: connections that send half a request head and then nothing.
    let mut loris = Vec::new();
    for _ in 0..20 {
        let addr = nimbus.running().gateway_addr;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /victim HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        loris.push(stream);
    }

    let mut victims = Vec::new();
    for _ in 0..2 {
        let (http, url) = (
            nimbus.http.clone(),
            format!("{}/victim", nimbus.gateway_url),
        );
        victims.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0, Vec::new());
            for _ in 0..300 {
                match http.get(&url).send().await {
                    Ok(resp) if resp.status() == 200 => ok += 1,
                    Ok(resp) => errors.push(resp.status().to_string()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (ok, errors)
        }));
    }
    let mut victim_ok = 0;
    for victim in victims {
        let (ok, errors) = victim.await.unwrap();
        assert!(errors.is_empty(), "the victim saw errors: {errors:?}");
        victim_ok += ok;
    }
    stop.store(true, Ordering::Relaxed);
    let mut attacked = 0;
    for attacker in attackers {
        attacked += attacker.await.unwrap();
    }
    drop(loris);
    eprintln!("victim: {victim_ok} ok; attackers: {attacked} requests");
    assert_eq!(victim_ok, 600);
    nimbus.stop().await;
}
