//! Metering and billing: every invocation leaves a usage record; `/v1/usage` and `nimbus
//! usage` bill them as Lambda would; records survive a kill -9 up to the meter's window.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_cli::client::UsageQuery;
use nimbus_metering::{GroupBy, Outcome, TriggerKind, UsageRecord};

use crate::cli::Up;
use crate::guests;
use crate::harness::Nimbus;

/// Polls the usage API until it counts `invocations` (run) and `rejected` in all.
async fn settled(nimbus: &Nimbus, invocations: u64, rejected: u64) -> Vec<UsageRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let query = UsageQuery::default();
    loop {
        let usage = nimbus.api.usage(&query).await.unwrap();
        let total = &usage.report.total;
        if total.counters.invocations == invocations && total.counters.rejected == rejected {
            return nimbus
                .api
                .usage_records(&query, None, 1000)
                .await
                .unwrap()
                .records;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached {invocations} + {rejected} rejected: {total:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 10 calls to a 128 MB hello, a few to a 256 MB function sleeping 30–200 ms, one request
/// turned away at max_concurrency: the report's GB-seconds and cost equal a hand computation from
/// the records, with Lambda's prices and 1 ms rounding, and the rejected request is counted
/// but not billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bill_matches_a_hand_computation_of_the_records() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    let sleep = guests::c("sleep");
    let manifest = "[app]\nname = \"billing\"\n\n\
        [[function]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\nmemory_mb = 128\n\n\
        [[function]]\nname = \"nap\"\ncomponent = \"nap.wasm\"\nroutes = [\"/nap\"]\nmemory_mb = 256\nmax_concurrency = 1\n";
    nimbus
        .deploy(manifest, &[("hello", &hello), ("nap", &sleep)])
        .await
        .unwrap();
    for _ in 0..10 {
        let resp = nimbus.get("/hello").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "hello from nimbus\n");
    }
    let nap = |ms: &'static str| {
        nimbus
            .http
            .get(format!("{}/nap", nimbus.gateway_url))
            .header("x-sleep-ms", ms)
            .send()
    };
    let mut naps = 0;
    for _ in 0..2 {
        assert_eq!(nap("30").await.unwrap().status(), 200);
        naps += 1;
    }
    // Two at once on a function with one slot: one runs, the other is turned away (if they
    // happen not to overlap, both run, and the pair is sent again).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rejected = 0;
    while rejected == 0 {
        let (a, b) = tokio::join!(nap("200"), nap("200"));
        for status in [a.unwrap().status(), b.unwrap().status()] {
            match status.as_u16() {
                200 => naps += 1,
                429 => rejected += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert!(Instant::now() < deadline, "the two calls never overlapped");
    }
    assert_eq!(rejected, 1);

    let records = settled(&nimbus, 10 + naps, 1).await;
    let mut hand_mb_ms = 0u64;
    let mut billed = 0u64;
    for r in &records {
        assert_eq!(&*r.app, "billing");
        assert_eq!(r.trigger, TriggerKind::Http);
        assert_eq!(r.invocation_id, r.request_id);
        if r.outcome == Outcome::Rejected {
            assert_eq!(&*r.function, "nap");
            assert_eq!(r.billed_ms, 0);
            continue;
        }
        assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
        assert_eq!(r.billed_ms, r.duration_us.div_ceil(1000));
        assert!(r.peak_memory_bytes > 0 && r.cpu_us > 0, "{r:?}");
        assert!(r.cpu_us <= r.duration_us, "{r:?}");
        match &*r.function {
            "hello" => {
                assert_eq!((r.memory_mb, r.bytes_out), (128, 18), "{r:?}");
            }
            "nap" => {
                assert_eq!(r.memory_mb, 256);
                assert!(r.billed_ms >= 30, "{r:?}");
            }
            other => panic!("unexpected function {other}"),
        }
        hand_mb_ms += u64::from(r.memory_mb) * r.billed_ms;
        billed += 1;
    }
    let usage = nimbus.api.usage(&UsageQuery::default()).await.unwrap();
    let total = &usage.report.total;
    let gb_s = hand_mb_ms as f64 / 1024.0 / 1000.0;
    let cost = billed as f64 * 0.20 / 1_000_000.0 + gb_s * 0.000_016_666_7;
    assert_eq!(total.counters.invocations, billed);
    assert!(
        (total.gb_seconds - gb_s).abs() < 1e-12,
        "{total:?} vs {gb_s}"
    );
    assert!((total.cost_usd - cost).abs() < 1e-15, "{total:?} vs {cost}");
    assert_eq!(usage.metering.lost, 0);

    // Grouped by function: two rows that add up to the total.
    assert_eq!(usage.report.by, GroupBy::Function);
    let rows = &usage.report.rows;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].function.as_deref(), Some("hello"));
    assert_eq!(rows[0].counters.invocations, 10);
    assert_eq!(rows[1].counters.invocations, naps);
    assert_eq!(rows[1].counters.rejected, 1);
    let sum: f64 = rows.iter().map(|r| r.cost_usd).sum();
    assert!((sum - total.cost_usd).abs() < 1e-15);

    // One invocation by its id.
    let one = &records[0];
    let found = nimbus
        .api
        .usage_records(&UsageQuery::default(), Some(&one.request_id), 10)
        .await
        .unwrap()
        .records;
    assert_eq!(found, std::slice::from_ref(one));
    nimbus.stop().await;
}

/// Instances kept ready by `min_instances` are billed as provisioned time, serving or not:
/// `min_instances` × memory × the time from the deploy to the app's deletion, at Lambda's
/// provisioned price, apart from (and with no) invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_instances_are_billed_as_provisioned_time() {
    let nimbus = Nimbus::start().await;
    let manifest = "[app]\nname = \"kept\"\n\n\
        [[function]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/kept\"]\n\
        memory_mb = 64\nmin_instances = 2\n";
    let before = Instant::now();
    nimbus
        .deploy(manifest, &[("hello", &guests::c("hello"))])
        .await
        .unwrap();
    let deployed = Instant::now();
    // Kept ready for a while without a single call: the time being billed, not a readiness
    // wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deleting = Instant::now();
    nimbus.api.delete("kept").await.unwrap();
    let deleted = Instant::now();

    let deadline = Instant::now() + Duration::from_secs(20);
    let total = loop {
        let usage = nimbus.api.usage(&UsageQuery::default()).await.unwrap();
        if usage.report.total.provisioned_gb_seconds > 0.0 {
            break usage.report.total;
        }
        assert!(Instant::now() < deadline, "no provisioned time: {usage:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // 2 instances × 64 MB = 0.125 GB, for at least the time between the deploy's answer and
    // the delete's request and at most from the deploy's request to the delete's answer.
    let gb = 2.0 * 64.0 / 1024.0;
    let least = gb * (deleting - deployed).as_secs_f64();
    let most = gb * (deleted - before).as_secs_f64();
    let billed = total.provisioned_gb_seconds;
    assert!(
        least <= billed && billed <= most,
        "billed {billed} GB-s, expected {least}..{most}"
    );
    assert_eq!(total.counters.invocations, 0);
    assert_eq!(total.gb_seconds, 0.0);
    let cost = billed * 0.000_004_166_7;
    assert!((total.cost_usd - cost).abs() < 1e-15, "{total:?} vs {cost}");
    let rows = nimbus
        .api
        .usage(&UsageQuery::default())
        .await
        .unwrap()
        .report
        .rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].function.as_deref(), Some("hello"));
    nimbus.stop().await;
}

/// A graceful shutdown bills kept instances up to the stop: the last partial span (shorter
/// than the one-minute reporting interval) is written before the meter closes, and the next
/// start reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_instances_are_billed_up_to_a_graceful_shutdown() {
    let nimbus = Nimbus::start().await;
    let manifest = "[app]\nname = \"kept\"\n\n\
        [[function]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/kept\"]\n\
        memory_mb = 128\nmin_instances = 1\n";
    let before = Instant::now();
    nimbus
        .deploy(manifest, &[("hello", &guests::c("hello"))])
        .await
        .unwrap();
    let deployed = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopping = Instant::now();
    let nimbus = nimbus.restart().await;
    let restarted = Instant::now();

    // The restored app is billed again from the new start, but reports its first span only
    // after a minute (or at the next stop): what is read here is the first run's time.
    let total = nimbus
        .api
        .usage(&UsageQuery::default())
        .await
        .unwrap()
        .report
        .total;
    let gb = 128.0 / 1024.0;
    let least = gb * (stopping - deployed).as_secs_f64();
    let most = gb * (restarted - before).as_secs_f64();
    let billed = total.provisioned_gb_seconds;
    assert!(
        least <= billed && billed <= most,
        "billed {billed} GB-s, expected {least}..{most}"
    );
    nimbus.stop().await;
}

/// Events are metered too: an async invocation of an HTTP function is recorded with the
/// `async` trigger and its invocation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invocations_are_metered_with_their_invocation_id() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("later", "echo", &["/echo"], "").await;
    let accepted = nimbus
        .api
        .invoke_async("later", "echo", b"ping".to_vec(), Default::default())
        .await
        .unwrap();
    let records = settled(&nimbus, 1, 0).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.trigger, TriggerKind::Async);
    assert_eq!(*r.invocation_id, *accepted.record.id);
    assert_ne!(*r.request_id, *accepted.record.id);
    assert_eq!(
        (r.bytes_in, r.bytes_out),
        (4, 4),
        "the echo guest reads and returns the payload"
    );
    nimbus.stop().await;
}

/// The user's view: after traffic, `nimbus usage --json` has one row per function with
/// invocations, GB-s and cost; the table and CSV say the same. Then kill -9 right after a
/// burst: everything metered before the meter's window is still there after the restart.
#[test]
fn nimbus_usage_after_traffic_and_across_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path());
    deploy_one(
        &up,
        &data.path().join("app"),
        "hello",
        "[app]\nname = \"meter\"\n\n[[function]]\nname = \"hello\"\ncomponent = \"hello.wasm\"\nroutes = [\"/m\"]\nmemory_mb = 512\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let gateway = gateway_url(&rt, &up);
    let call = |gateway: &str, n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                let resp = http.get(format!("{gateway}/m")).send().await.unwrap();
                assert_eq!(resp.status(), 200);
            }
        });
    };
    call(&gateway, 20);
    let rows = wait_for_rows(&up, 20);
    assert_eq!(rows[0]["app"], "meter");
    assert_eq!(rows[0]["function"], "hello");
    let gb_s = rows[0]["gb_seconds"].as_f64().unwrap();
    let billed_ms = rows[0]["billed_ms"].as_u64().unwrap();
    assert!((gb_s - billed_ms as f64 * 0.5 / 1000.0).abs() < 1e-12);
    let cost = rows[0]["cost_usd"].as_f64().unwrap();
    assert!((cost - (20.0 * 0.2e-6 + gb_s * 0.000_016_666_7)).abs() < 1e-15);

    let table = up.ok(&["usage", "--since", "1h"]);
    assert!(table.contains("meter/hello"), "{table}");
    assert!(table.contains("TOTAL"), "{table}");
    let csv = up.ok(&["usage", "--csv"]);
    assert!(csv.starts_with("app,function,"), "{csv}");
    assert!(csv.contains("\r\nmeter,hello,,20,"), "{csv}");

    // 30 more, then SIGKILL at once: at most the last window's records may be lost.
    call(&gateway, 30);
    up.kill_9_and_restart();
    let rows = rows_now(&up);
    let after = rows
        .first()
        .map_or(0, |r| r["invocations"].as_u64().unwrap());
    eprintln!("after kill -9: {after} of 50 invocations metered");
    assert!((20..=50).contains(&after), "{after}");
    // The store is usable after the crash: new traffic is metered on top.
    call(&gateway_url(&rt, &up), 5);
    wait_for_rows(&up, after + 5);
}

/// Writes an app dir with the C guest `guest` as `<guest>.wasm` and `manifest`, and deploys it
/// with the `nimbus` binary.
fn deploy_one(up: &Up, app: &Path, guest: &str, manifest: &str) {
    std::fs::create_dir_all(app).unwrap();
    std::fs::copy(guests::c(guest), app.join(format!("{guest}.wasm"))).unwrap();
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    up.ok(&["deploy", "--no-build", app.to_str().unwrap()]);
}

fn gateway_url(rt: &tokio::runtime::Runtime, up: &Up) -> String {
    let (api, token) = up.api();
    let client = nimbus_cli::client::ApiClient::new(api, Some(token));
    rt.block_on(client.info()).unwrap().gateway_url
}

fn rows_now(up: &Up) -> Vec<serde_json::Value> {
    serde_json::from_str(&up.ok(&["--json", "usage", "--since", "1h"])).unwrap()
}

fn wait_for_rows(up: &Up, invocations: u64) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = rows_now(up);
        if rows.first().and_then(|r| r["invocations"].as_u64()) == Some(invocations) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "nimbus usage never showed {invocations} invocations: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/metrics` after known traffic: five calls (the first a cold start, since the function had
/// scaled to zero), two KV writes and a read through the API, three queued messages — each
/// shows up in its series; without the token the scrape is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_count_known_traffic() {
    use nimbus_scaling::KeepAlivePolicy;
    let nimbus = Nimbus::start_configured(|config| {
        config.engine.keep_alive = KeepAlivePolicy::Fixed(Duration::from_millis(500));
        config.engine.reap_interval = Some(Duration::from_millis(20));
    })
    .await;
    let hello = guests::c("hello");
    let manifest = "[app]\nname = \"shop\"\n\n[[queue]]\nname = \"jobs\"\n\n\
        [[function]]\nname = \"api\"\ncomponent = \"api.wasm\"\nroutes = [\"/api\"]\nmemory_mb = 256\n";
    nimbus.deploy(manifest, &[("api", &hello)]).await.unwrap();
    // Wait for the function to scale to zero, so the first call is a cold start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nimbus.api.functions("shop").await.unwrap()[0].resident != Some(false) {
        assert!(Instant::now() < deadline, "never scaled to zero");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let resp = nimbus.get("/api").await;
        assert_eq!(resp.status(), 200);
        // Read the body: a client that hangs up before it is sent is (rightly) metered with
        // fewer bytes out.
        assert_eq!(resp.text().await.unwrap(), "hello from nimbus\n");
    }
    nimbus
        .api
        .kv_set("things", "a", b"1".to_vec(), None)
        .await
        .unwrap();
    nimbus
        .api
        .kv_set("things", "b", b"2".to_vec(), None)
        .await
        .unwrap();
    assert!(nimbus.api.kv_get("things", "a").await.unwrap().is_some());
    for i in 0..3 {
        nimbus
            .api
            .queue_send("shop", "jobs", format!("job {i}").into_bytes(), None, None)
            .await
            .unwrap();
    }

    let url = format!("{}/metrics", nimbus.api.base());
    let refused = nimbus.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(20);
    let expected = [
        r#"nimbus_invocations_total{app="shop",function="api",trigger="http",outcome="ok"} 5"#,
        r#"nimbus_cold_starts_total{app="shop",function="api"} 1"#,
        r#"nimbus_invocation_duration_seconds_count{app="shop",function="api"} 5"#,
        r#"nimbus_function_body_bytes_total{app="shop",function="api",direction="out"} 90"#,
        r#"nimbus_kv_operations_total{op="set"} 2"#,
        r#"nimbus_kv_operations_total{op="get"} 1"#,
        r#"nimbus_queue_messages{app="shop",queue="jobs",state="ready"} 3"#,
        r#"nimbus_instances_in_flight{app="shop",function="api"} 0"#,
        "nimbus_usage_records_lost_total 0",
    ];
    // Series fed by the meter's writer land batch by batch (and a scrape can fall between two
    // series of one batch): poll until every expected line is there.
    let text = loop {
        let resp = nimbus
            .http
            .get(&url)
            .bearer_auth(&nimbus.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let text = resp.text().await.unwrap();
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|line| !text.lines().any(|l| l == *line))
            .collect();
        if missing.is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "never showed {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Residency is read at scrape time: 1 or 0, depending on whether the 500 ms keep-alive
    // has passed again by now.
    assert!(
        text.lines()
            .any(|l| l.starts_with(r#"nimbus_function_resident{app="shop",function="api"} "#)),
        "{text}"
    );
    // The bill is written right after the metrics are counted: wait for it to hold all five.
    settled(&nimbus, 5, 0).await;
    // The GB-seconds series agrees with the bill.
    let usage = nimbus.api.usage(&UsageQuery::default()).await.unwrap();
    let gb_s: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"nimbus_billed_gb_seconds_total{app="shop",function="api"} "#)
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!((gb_s - usage.report.total.gb_seconds).abs() < 1e-9);
    nimbus.stop().await;
}

/// A small tmpfs mounted for one test and unmounted when dropped (lazily, so a test that fails
/// with files open still leaves nothing mounted).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Needs the right to mount (root, as on the CI machines): without it the test fails and
    /// says so rather than pass untested.
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "this test mounts a tmpfs to fill a real disk and needs root (mount failed: {status})"
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes until the disk is full (ENOSPC).
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            match filler.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = filler.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The usage and log stores on a disk that fills up (a real ENOSPC, on a tmpfs): every
/// request is still served, the lost records and lines are counted and reported, and once space
/// is free again new invocations are metered and their lines stored — and the bill counts every
/// invocation, those of the full-disk time included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_usage_records_and_log_lines_not_requests_nor_the_bill() {
    use nimbus_cli::client::LogQuery;
    let disk = SmallDisk::mount(8 << 20);
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // Only the usage and log stores live on the small disk.
    for store in ["usage.redb", "logs.redb"] {
        std::os::unix::fs::symlink(disk.path().join(store), data.path().join(store)).unwrap();
    }
    let nimbus = Nimbus::start_in(data.clone()).await;
    // `env` writes a line to stdout and one to stderr per request.
    nimbus.deploy_guest("full", "env", &["/env"], "").await;
    for _ in 0..5 {
        assert_eq!(nimbus.get("/env").await.status(), 200);
    }
    settled(&nimbus, 5, 0).await;
    let logs = LogQuery {
        app: Some("full"),
        since: Some("1h"),
        limit: Some(10_000),
        ..LogQuery::default()
    };

    disk.fill();
    let query = UsageQuery::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = 0;
    let (records_lost, lines_lost) = loop {
        for _ in 0..20 {
            let resp = nimbus.get("/env").await;
            assert_eq!(resp.status(), 200, "a request failed on a full disk");
            served += 1;
        }
        let usage = nimbus.api.usage(&query).await.unwrap();
        let lines = nimbus.api.logs(&logs).await.unwrap().counts;
        if usage.metering.lost > 0 && lines.lost > 0 {
            break (usage.metering.lost, lines.lost);
        }
        assert!(
            Instant::now() < deadline,
            "nothing counted lost on a full disk: {:?} {lines:?}",
            usage.metering
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    };
    eprintln!(
        "full disk: {served} requests served, {records_lost} records and {lines_lost} lines lost so far"
    );

    // Space again: the next invocations are metered and their lines stored.
    disk.free();
    let lines_before = nimbus.api.logs(&logs).await.unwrap().lines.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut served = 5 + served;
    loop {
        assert_eq!(nimbus.get("/env").await.status(), 200);
        served += 1;
        let usage = nimbus.api.usage(&query).await.unwrap();
        let lines = nimbus.api.logs(&logs).await.unwrap().lines.len();
        if usage.metering.written > 5 && lines > lines_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stores never recovered after space was freed ({:?}, {lines} lines)",
            usage.metering
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Rows are written again, and the usage of the full-disk time went with them: the bill
    // counts every request served.
    settled(&nimbus, served, 0).await;
    let usage = nimbus.api.usage(&query).await.unwrap();
    assert_eq!(usage.metering.unbilled, 0, "{:?}", usage.metering);
    assert!(usage.metering.lost > 0, "{:?}", usage.metering);
    nimbus.stop().await;
}

/// libfaketime (Debian's `faketime`, installed by scripts/setup-toolchains.sh): preloaded into
/// `nimbus up`, it steps the process's wall clock when its offset file changes, leaving the
/// monotonic clock alone — as an NTP step or an operator's `date -s` does.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The wall clock steps back two hours while an invocation runs: its duration (and bill) comes
/// from the monotonic clock and stays what it was, and only its start stamp shows the step.
#[test]
fn a_wall_clock_step_does_not_bend_durations() {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run scripts/setup-toolchains.sh"
    );
    let data = tempfile::tempdir().unwrap();
    let offset = data.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let offset_path = offset.to_str().unwrap().to_owned();
    let mut up = Up::start_env(
        &data.path().join("nimbus"),
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &offset_path),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    deploy_one(
        &up,
        &data.path().join("app"),
        "sleep",
        "[app]\nname = \"clock\"\n\n[[function]]\nname = \"nap\"\ncomponent = \"sleep.wasm\"\nroutes = [\"/nap\"]\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gateway = gateway_url(&rt, &up);
    let http = reqwest::Client::new();
    let nap = |ms: u64| {
        let http = http.clone();
        let url = format!("{gateway}/nap");
        async move {
            let resp = http
                .get(url)
                .header("x-sleep-ms", ms.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap();
        }
    };
    rt.block_on(async {
        let during = tokio::spawn(nap(800));
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&offset, "-2h\n").unwrap();
        during.await.unwrap();
        nap(100).await;
    });
    let records = wait_for_records(&mut up, 2);
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut durations: Vec<(u64, u64)> = records
        .iter()
        .map(|r| {
            (
                r["duration_us"].as_u64().unwrap(),
                r["start_unix_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    durations.sort();
    let (short, long) = (durations[0], durations[1]);
    assert!(
        (100_000..2_000_000).contains(&short.0),
        "the 100 ms nap took {} µs",
        short.0
    );
    assert!(
        (800_000..3_000_000).contains(&long.0),
        "the 800 ms nap, across a 2 h step back, took {} µs",
        long.0
    );
    // Started before the step: a real-time stamp; after it: two hours behind.
    assert!(real_now.abs_diff(long.1) < 60_000, "{long:?}");
    let behind = real_now.saturating_sub(short.1);
    assert!(
        (7_100_000..7_300_000).contains(&behind),
        "the later start stamp is {behind} ms behind"
    );
    let billed: Vec<u64> = records
        .iter()
        .map(|r| r["billed_ms"].as_u64().unwrap())
        .collect();
    assert!(billed.iter().all(|&ms| ms < 3_000), "{billed:?}");
}

fn wait_for_records(up: &mut Up, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = up.ok(&["--json", "usage", "--records", "--since", "24h"]);
        let records: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "only {} usage records appeared",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
