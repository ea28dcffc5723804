//! What an outside probe found: listeners flooded with slow connections, and the data dir's
//! permissions.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::Up;
use crate::harness::{Nimbus, manifest};

/// Opens `per_source` connections from each of `sources` (loopback addresses) to `addr` and
/// sends each the start of a request head that never ends. Connections the kernel does not
/// complete within 2 s are given up.
async fn slow_clients(addr: SocketAddr, sources: &[String], per_source: usize) -> Vec<TcpStream> {
    let mut attempts = Vec::new();
    for source in sources {
        for _ in 0..per_source {
            let source: SocketAddr = format!("{source}:0").parse().unwrap();
            attempts.push(tokio::spawn(async move {
                let socket = TcpSocket::new_v4().ok()?;
                socket.bind(source).ok()?;
                let mut conn = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
                    .await
                    .ok()?
                    .ok()?;
                conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await
                    .ok()?;
                Some(conn)
            }));
        }
    }
    let mut open = Vec::new();
    for attempt in attempts {
        if let Some(conn) = attempt.await.unwrap() {
            open.push(conn);
        }
    }
    open
}

fn sources(first: u8, n: u8) -> Vec<String> {
    (first..first + n).map(|i| format!("127.0.0.{i}")).collect()
}

/// Each listener gets more half-sent requests than the server may open files (a limit of
/// 1024): before the listeners had connection caps, the control API alone took every
/// descriptor and the gateway could no longer accept ("Too many open files").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_served_while_every_listener_is_flooded() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start_limited(
        data.path(),
        &[
            "--max-connections-per-client",
            "40",
            // Long enough that the flood holds for the whole test.
            "--header-read-timeout-ms",
            "300000",
            "--idle-timeout-ms",
            "300000",
        ],
        1024,
    );
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        manifest("hello", "hello", &["/hello"], ""),
    )
    .unwrap();
    std::fs::copy(crate::guests::c("hello"), app.path().join("hello.wasm")).unwrap();
    up.ok(&["deploy", "--no-build", app.path().to_str().unwrap()]);

    let (api, token) = up.api();
    let info = nimbus_cli::client::ApiClient::new(api.clone(), Some(token))
        .info()
        .await
        .unwrap();
    let addr = |url: &str| -> SocketAddr { url.trim_start_matches("http://").parse().unwrap() };
    let gateway = addr(&info.gateway_url);
    let s3 = addr(info.s3_url.as_deref().unwrap());
    let api_addr = addr(&api);

    // 1,200 connections to the control API and 600 to S3, from 45 addresses; 100 to the
    // gateway from one address, over its cap of 40.
    let control_flood = slow_clients(api_addr, &sources(10, 30), 40).await;
    let s3_flood = slow_clients(s3, &sources(40, 15), 40).await;
    let mut gateway_flood = slow_clients(gateway, &sources(2, 1), 100).await;
    // Each listener holds its cap (256 here); the kernel's backlog takes some more. Without
    // the caps the server took all 1,800 and ran out of descriptors.
    assert!(control_flood.len() > 300, "{}", control_flood.len());
    assert!(s3_flood.len() > 300, "{}", s3_flood.len());

    // The one flooding client got 429 past its cap, at once.
    let mut refused = 0;
    for conn in &mut gateway_flood {
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), conn.read(&mut buf)).await
            && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 429")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 60, "connections refused past the per-client cap");

    // Function traffic from another client is served throughout, each on a new connection.
    for i in 0..20 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{gateway}/hello"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} during the flood failed: {e}"));
        assert_eq!(response.status(), 200, "request {i}");
    }

    // Once the flood ends, the control API answers again.
    drop((control_flood, s3_flood, gateway_flood));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = up.nimbus(&["apps"]);
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
            break;
        }
        assert!(Instant::now() < deadline, "the control API did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nothing in the data dir is readable by others: state, stores, objects, blobs, keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_owner_only() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("h", "hello", &["/h"], "").await;
    nimbus
        .api
        .kv_set("notes", "k", b"v".to_vec(), None)
        .await
        .unwrap();
    nimbus
        .api
        .secret_set("h", "token", "s3cret".into())
        .await
        .unwrap();
    assert_eq!(nimbus.get("/h").await.status(), 200);
    let data = nimbus.data_dir.clone();
    let root = data.path().to_owned();
    nimbus.stop().await;

    let mut seen = 0;
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is {:o}",
                entry.path().display(),
                mode & 0o777
            );
            seen += 1;
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(seen >= 8, "only {seen} entries under {}", root.display());
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

fn digest(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A component path that is a symlink out of the app directory is refused before anything
/// is uploaded; one that stays inside works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_refuses_components_that_resolve_outside_the_app_dir() {
    use nimbus_cli::commands::deploy::{Build, deploy_dir};
    let nimbus = Nimbus::start().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("id_ed25519.wasm");
    std::fs::copy(crate::guests::c("hello"), &secret).unwrap();

    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        manifest("linked", "hello", &["/linked"], ""),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, app.path().join("hello.wasm")).unwrap();
    let err = deploy_dir(&nimbus.api, app.path(), Build::Skip, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the app directory"), "{err}");
    assert!(!nimbus.api.has_blob(&digest(&secret)).await.unwrap());

    // A symlink to a file inside the app dir is fine.
    std::fs::remove_file(app.path().join("hello.wasm")).unwrap();
    std::fs::create_dir(app.path().join("build")).unwrap();
    std::fs::copy(&secret, app.path().join("build/out.wasm")).unwrap();
    std::os::unix::fs::symlink("build/out.wasm", app.path().join("hello.wasm")).unwrap();
    deploy_dir(&nimbus.api, app.path(), Build::Skip, true)
        .await
        .unwrap();
    assert_eq!(nimbus.get("/linked").await.status(), 200);
    nimbus.stop().await;
}

/// Blobs of a refused deploy, and of a deleted app, are removed; a live version's stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_no_version_references_are_swept() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("h", "hello", &["/h"], "").await;
    let live = digest(&crate::guests::c("hello"));

    // A blob uploaded for a deploy that is refused (not a component).
    let junk = b"not a component".to_vec();
    let junk_digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&junk))
    };
    nimbus
        .api
        .put_blob(&junk_digest, reqwest::Body::from(junk))
        .await
        .unwrap();
    let refused = nimbus
        .api
        .deploy(&nimbus_control::types::DeployRequest {
            manifest: manifest("junk", "f", &["/junk"], ""),
            manifest_file: None,
            components: [("f".to_owned(), junk_digest.clone())].into(),
        })
        .await;
    assert!(refused.is_err());

    // Within the grace period nothing goes; past it, only the orphan.
    let running = nimbus.running();
    assert_eq!(
        running
            .sweep_blobs(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(running.sweep_blobs(Duration::ZERO).await.unwrap(), 1);
    assert!(!nimbus.api.has_blob(&junk_digest).await.unwrap());
    assert!(nimbus.api.has_blob(&live).await.unwrap());
    assert_eq!(nimbus.get("/h").await.status(), 200);

    nimbus.api.delete("h").await.unwrap();
    assert_eq!(running.sweep_blobs(Duration::ZERO).await.unwrap(), 1);
    assert!(!nimbus.api.has_blob(&live).await.unwrap());
    nimbus.stop().await;
}
