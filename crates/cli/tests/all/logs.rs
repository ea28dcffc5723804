//! Function logs: guests' stdout/stderr and the platform's events about invocations, stored
//! tagged with their ids, filtered, capped per invocation, and followed live.

use std::io::BufRead;
use std::time::{Duration, Instant};

use nimbus_cli::client::LogQuery;
use nimbus_logs::{LogLine, Stream};

use crate::cli::Up;
use crate::guests;
use crate::harness::Nimbus;

/// Polls the logs API until `want` says the lines are complete.
pub(crate) async fn lines_until(
    nimbus: &Nimbus,
    query: &LogQuery<'_>,
    want: impl Fn(&[LogLine]) -> bool,
) -> Vec<LogLine> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = nimbus.api.logs(query).await.unwrap().lines;
        if want(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "log lines never arrived: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_stored_with_its_ids_and_filters_by_invocation() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest(
            "envapp",
            "env",
            &["/env"],
            "[function.env]\nGREETING = \"hej\"",
        )
        .await;
    nimbus.deploy_guest("broken", "trap", &["/trap"], "").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = nimbus.get("/env").await;
        assert_eq!(resp.status(), 200);
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let app = LogQuery {
        app: Some("envapp"),
        ..LogQuery::default()
    };
    let lines = lines_until(&nimbus, &app, |l| l.len() >= 4).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        assert_eq!((&*line.app, &*line.function), ("envapp", "env"));
        assert!(ids.iter().any(|id| **id == *line.request_id), "{line:?}");
        assert_eq!(line.invocation_id, line.request_id);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stdout && l.message == "stdout-line GREETING=hej")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.message == "stderr-line")
    );

    let one = LogQuery {
        invocation: Some(&ids[1]),
        ..LogQuery::default()
    };
    let only = nimbus.api.logs(&one).await.unwrap().lines;
    assert_eq!(only.len(), 2);
    assert!(only.iter().all(|l| *l.request_id == *ids[1]));

    // A trap leaves a platform line under the request id (the client saw only "trapped").
    let resp = nimbus.get("/trap").await;
    assert_eq!(resp.status(), 500);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let query = LogQuery {
        invocation: Some(&id),
        ..LogQuery::default()
    };
    let lines = lines_until(&nimbus, &query, |l| !l.is_empty()).await;
    assert_eq!(lines[0].stream, Stream::Platform);
    assert!(lines[0].message.contains("trapped"), "{lines:?}");
    nimbus.stop().await;
}

/// A function printing 4 MiB per invocation: the platform keeps its first 64 KiB and a note
/// of how much it dropped; another function's lines and responses are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_function_is_capped_and_others_are_unaffected() {
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy_guest("chatty", "chatty", &["/chatty"], "")
        .await;
    nimbus.deploy_guest("quiet", "env", &["/env"], "").await;
    let chatty = nimbus.get("/chatty").await;
    assert_eq!(chatty.status(), 200);
    assert_eq!(chatty.text().await.unwrap(), "printed\n");
    assert_eq!(nimbus.get("/env").await.status(), 200);

    let app = LogQuery {
        app: Some("chatty"),
        limit: Some(10_000),
        ..LogQuery::default()
    };
    let lines = lines_until(&nimbus, &app, |l| {
        l.iter().any(|l| l.stream == Stream::Platform)
    })
    .await;
    let kept: usize = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.message.len() + 1)
        .sum();
    // 64 KiB, counted with a line break per line (the last one was cut mid-line).
    assert!(kept <= 64 * 1024 + 1, "kept {kept} bytes");
    assert!(kept >= 60 * 1024, "kept only {kept} bytes");
    assert_eq!(lines[0].message, "chatty-start");
    let note = lines.iter().find(|l| l.stream == Stream::Platform).unwrap();
    assert!(note.message.contains("were dropped"), "{note:?}");

    let quiet = LogQuery {
        app: Some("quiet"),
        ..LogQuery::default()
    };
    lines_until(&nimbus, &quiet, |l| l.len() == 2).await;
    nimbus.stop().await;
}

/// `nimbus logs -f APP` as a user runs it: it prints the function's output as it happens.
#[test]
fn nimbus_logs_follow_prints_output_live() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let app = data.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(guests::c("env"), app.join("env.wasm")).unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        "[app]\nname = \"talk\"\n\n[[function]]\nname = \"env\"\ncomponent = \"env.wasm\"\nroutes = [\"/talk\"]\n\n[function.env]\nGREETING = \"live\"\n",
    )
    .unwrap();
    up.ok(&["deploy", "--no-build", app.to_str().unwrap()]);
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["logs", "-f", "talk"])
        .env("NIMBUS_CONFIG", up.config.path().join("config.json"))
        .env_remove("NIMBUS_API")
        .env_remove("NIMBUS_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (api, token) = up.api();
    let client = nimbus_cli::client::ApiClient::new(api, Some(token));
    let gateway = rt.block_on(client.info()).unwrap().gateway_url;
    // Call until the follower shows the line (it may connect after the first call).
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let status = rt
            .block_on(reqwest::get(format!("{gateway}/talk")))
            .unwrap()
            .status();
        assert_eq!(status, 200);
        match rx.recv_timeout(Duration::from_millis(300)) {
            Ok(line) if line.contains("stdout-line") => break line,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("nimbus logs -f ended: {e}"),
        }
        assert!(Instant::now() < deadline, "nimbus logs -f showed nothing");
    };
    assert!(line.contains("talk/env"), "{line}");
    assert!(line.contains("stdout: stdout-line GREETING=live"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();

    // Stored within the sink's flush window (50 ms plus a commit) after it was written: the
    // follower may have shown it sooner.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let printed = up.ok(&["logs", "talk", "--since", "10m"]);
        if printed.contains("stderr: stderr-line") {
            break;
        }
        assert!(Instant::now() < deadline, "never stored: {printed}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
