//! Fairness between apps: a flood of CPU-bound requests on one app does not starve another.

use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::{Nimbus, manifest};

/// 40 requests to an app whose function spins until its CPU budget runs out, all at once;
/// meanwhile a victim app is called one request at a time. Without fair sharing the victim
/// waits behind every spinning guest at each 5 ms tick (40 × 5 ms / 2 workers ≈ 100 ms per
/// slice); with per-app CPU slots only two of the aggressor's guests are runnable at a time.
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

    baseline.sort();
    during.sort();
    let median = during[during.len() / 2];
    eprintln!(
        "victim median: {:?} alone, {:?} during the flood (max {:?})",
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
