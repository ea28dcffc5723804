//! Fairness between apps: a flood of CPU-bound requests on one app does not starve another.

use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::{Nimbus, manifest};

/// 40 requests to an app whose function spins until its CPU budget runs out, all at once;
/// meanwhile a victim app is called one request at a time. Without fair sharing the victim
/// waits behind every spinning guest at each 5 ms tick (40 × 5 ms / 2 workers ≈ 100 ms per
/// slice); with per-app CPU slots only two of the aggressor's guests are runnable at a time,
/// and they run on the engine's CPU runtime, apart from the threads serving HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_flood_on_one_app_does_not_starve_another() {
    let nimbus = Nimbus::start().await;
    let hostile = guests::c("loop");
    let victim = guests::c("hello");
    nimbus
        .deploy(
            &manifest(
                "aggressor",
                "spin",
                &["/spin"],
                "max_concurrency = 100\ntimeout_ms = 4000\ncpu_time_ms = 1000",
            ),
            &[("spin", &hostile)],
        )
        .await
        .unwrap();
    nimbus
        .deploy(
            &manifest("victim", "hello", &["/hello"], ""),
            &[("hello", &victim)],
        )
        .await
        .unwrap();

    let mut baseline = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(nimbus.get("/hello").await.status(), 200);
        baseline.push(started.elapsed());
    }

    let cpu_runtime_before = thread_cpu_time("nimbus-cpu");
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let request = nimbus
                .http
                .get(format!("{}/spin", nimbus.gateway_url))
                .send();
            tokio::spawn(async move { request.await.unwrap().status().as_u16() })
        })
        .collect();
    // Let the flood get going: every spinning guest is past its first tick.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut during = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(nimbus.get("/hello").await.status(), 200);
        during.push(started.elapsed());
    }
    let statuses = futures::future::join_all(flood).await;
    // The aggressor is stopped by its own limits.
    assert!(
        statuses.iter().all(|s| matches!(s.as_ref().unwrap(), 504)),
        "{statuses:?}"
    );
    // The spinning guests ran on the engine's CPU runtime, not on the threads serving HTTP
    // (the engine's `offload`): seconds of CPU on `nimbus-cpu` threads during the flood. (Tests
    // run in parallel in this process, so others' CPU runtimes count too: the check is that
    // the flood's CPU is there at all, which it was not before the offload.)
    let on_cpu_runtime = thread_cpu_time("nimbus-cpu").saturating_sub(cpu_runtime_before);
    assert!(
        on_cpu_runtime > Duration::from_secs(1),
        "the spinning guests ran elsewhere: {on_cpu_runtime:?} on nimbus-cpu threads"
    );

    baseline.sort();
    during.sort();
    let median = during[during.len() / 2];
    eprintln!(
        "victim median: {:?} alone, {:?} during the flood (max {:?}); CPU on nimbus-cpu \
         threads during the flood: {on_cpu_runtime:?}",
        baseline[baseline.len() / 2],
        median,
        during.last().unwrap()
    );
    assert!(
        median < Duration::from_millis(40),
        "the victim waited behind the flood: median {median:?}, all {during:?}"
    );
    nimbus.stop().await;
}

/// CPU time (user + system) of this process's threads whose name starts with `prefix`, from
/// `/proc/self/task/*/stat` (the in-process Nimbus's threads; clock ticks of 10 ms).
fn thread_cpu_time(prefix: &str) -> Duration {
    let ticks_per_second = 100; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    Duration::from_millis(ticks * 1000 / ticks_per_second)
}

/// One scrape of `/metrics`: the value of `series` (a whole series name with labels), if shown.
async fn gauge(nimbus: &Nimbus, series: &str) -> Option<String> {
    let text = nimbus.api_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

/// A flood of cheap requests that each overflow the stack (~100 µs of recursion and unwinding,
/// far below the "heavy" average) saturates the machine beside a victim app: the governor
/// finds the aggressor over its share and throttles it — never the victim, which sees no
/// errors — and lets go once the flood ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cheap_trapping_requests_gets_its_app_throttled_not_the_victim() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(
            &manifest("aggressor", "deep", &["/deep"], "max_concurrency = 100"),
            &[("deep", &guests::c("deep"))],
        )
        .await
        .unwrap();
    nimbus
        .deploy(
            &manifest("victim", "hello", &["/hello"], ""),
            &[("hello", &guests::c("hello"))],
        )
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, stop) = (
                nimbus.http.clone(),
                format!("{}/deep", nimbus.gateway_url),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http.get(&url).send().await.unwrap().status().as_u16();
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();

    let throttled = r#"nimbus_app_cpu_throttled{app="aggressor"}"#;
    let victim_throttled = r#"nimbus_app_cpu_throttled{app="victim"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The victim keeps calling (it stays active, so it is owed a share).
        for _ in 0..5 {
            assert_eq!(nimbus.get("/hello").await.status(), 200);
        }
        assert_ne!(
            gauge(&nimbus, victim_throttled).await.as_deref(),
            Some("1"),
            "the victim was throttled"
        );
        if gauge(&nimbus, throttled).await.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aggressor was never throttled (contended: {:?})",
            gauge(&nimbus, "nimbus_cpu_contended").await
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for statuses in futures::future::join_all(flood).await {
        let statuses = statuses.unwrap();
        // Stopped by its own limit (a trap: 500), or turned away at its budget (429).
        assert!(
            statuses.keys().all(|s| matches!(s, 500 | 429)),
            "{statuses:?}"
        );
    }
    // Once the flood is over, nobody is held back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(&nimbus, "nimbus_cpu_contended").await.as_deref() != Some("0") {
        assert!(Instant::now() < deadline, "still contended after the flood");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nimbus.stop().await;
}
