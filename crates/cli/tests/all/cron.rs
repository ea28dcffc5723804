//! Cron triggers: the nightly-report example on a two-second schedule — once per tick, across
//! redeploys and restarts, and both missed-tick policies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::guests;
use crate::harness::Nimbus;

/// Every report the function wrote, by tick, and its run counter.
async fn reports(nimbus: &Nimbus) -> (BTreeMap<String, serde_json::Value>, u64) {
    let page = nimbus
        .api
        .kv_list("orders", "report:2", None, 1000)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for key in page.keys {
        let value = nimbus.api.kv_get("orders", &key).await.unwrap().unwrap();
        out.insert(key, serde_json::from_slice(&value).unwrap());
    }
    let runs = match nimbus.api.kv_get("orders", "count:reports").await.unwrap() {
        Some(v) => std::str::from_utf8(&v).unwrap().parse().unwrap(),
        None => 0,
    };
    (out, runs)
}

async fn wait_for_runs(nimbus: &Nimbus, at_least: u64) -> BTreeMap<String, serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (reports, runs) = reports(nimbus).await;
        if runs >= at_least {
            return reports;
        }
        assert!(
            Instant::now() < deadline,
            "only {runs} cron runs, wanted {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ms(rfc3339: &serde_json::Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_once_per_tick_across_redeploys_and_restarts() {
    let (manifest, component) = guests::example("nightly-report", "report");
    let every_2s = manifest.replace("schedule = \"0 3 * * *\"", "schedule = \"*/2 * * * * *\"");
    assert_ne!(every_2s, manifest);
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&every_2s, &[("report", &component)])
        .await
        .unwrap();
    let first = wait_for_runs(&nimbus, 2).await;
    for report in first.values() {
        let tick = ms(&report["tick"]);
        assert_eq!(tick % 2000, 0, "ticks on even seconds: {report}");
        let late = ms(&report["ranAt"]) - tick;
        assert!(
            (0..1000).contains(&late),
            "ran {late} ms after its tick: {report}"
        );
        assert_eq!(report["catchUp"], false);
    }
    // A redeploy mid-schedule (old and new version overlap briefly) fires no tick twice.
    nimbus
        .deploy(&every_2s, &[("report", &component)])
        .await
        .unwrap();
    wait_for_runs(&nimbus, 4).await;

    // Down for more than two ticks; `run-once` (the default) runs the latest missed one once.
    let data = nimbus.data_dir.clone();
    nimbus.stop().await;
    let stopped = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let nimbus = Nimbus::restart_in(data).await;
    let restarted_at = chrono::Utc::now().timestamp_millis();
    let (before, runs_before) = reports(&nimbus).await;
    let after = wait_for_runs(&nimbus, runs_before + 2).await;
    let catch_ups: Vec<_> = after.values().filter(|r| r["catchUp"] == true).collect();
    assert_eq!(catch_ups.len(), 1, "one catch-up run: {after:?}");
    let missed = ms(&catch_ups[0]["tick"]);
    assert!(
        missed > stopped && missed <= restarted_at && restarted_at - missed <= 2000,
        "the catch-up is for the latest missed tick: {missed} (down {stopped}..{restarted_at})"
    );
    assert!(before.len() <= after.len());

    // `skip`: nothing is run for ticks missed while down.
    let skip = every_2s.replace("missed = \"run-once\"", "missed = \"skip\"");
    assert_ne!(skip, every_2s);
    nimbus
        .deploy(&skip, &[("report", &component)])
        .await
        .unwrap();
    let data = nimbus.data_dir.clone();
    nimbus.stop().await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let nimbus = Nimbus::restart_in(data).await;
    let (_, runs) = reports(&nimbus).await;
    let last = wait_for_runs(&nimbus, runs + 2).await;
    let catch_ups = last.values().filter(|r| r["catchUp"] == true).count();
    assert_eq!(catch_ups, 1, "no second catch-up with missed = \"skip\"");

    // Never twice: one report key per run, across two restarts and two redeploys.
    // (A run in progress may have written its report and not yet counted itself.)
    let (all, runs) = reports(&nimbus).await;
    let ticks = all.len() as u64;
    assert!(
        runs <= ticks && ticks <= runs + 1,
        "a tick ran twice: {runs} runs, {ticks} ticks"
    );
    nimbus.stop().await;
}
