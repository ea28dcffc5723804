//! Deploy, versions, rollback, delete, restart, and every way a deploy can be wrong.

use crate::guests;
use crate::harness::{Nimbus, manifest};

#[tokio::test]
async fn deploy_serves_then_redeploy_compiles_nothing_and_rollback_and_delete_work() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    let m = manifest("hello", "hello", &["/hello", "/hello/..."], "");

    let first = nimbus.deploy(&m, &[("hello", &hello)]).await.unwrap();
    assert_eq!(first.app.active_version, 1);
    assert!(!first.components[0].cache_hit, "first deploy compiles");

    let resp = nimbus.get("/hello/there").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "hello from nimbus\n");

    let second = nimbus.deploy(&m, &[("hello", &hello)]).await.unwrap();
    assert_eq!(second.app.active_version, 2);
    assert!(
        second.components[0].cache_hit,
        "unchanged component must not be recompiled"
    );

    // Version 3 moves the route; rolling back to 2 brings the old route back.
    let moved = manifest("hello", "hello", &["/moved"], "");
    nimbus.deploy(&moved, &[("hello", &hello)]).await.unwrap();
    assert_eq!(nimbus.get("/hello").await.status(), 404);
    assert_eq!(nimbus.get("/moved").await.status(), 200);

    let rolled = nimbus.api.rollback("hello", None).await.unwrap();
    assert_eq!(rolled.active_version, 2);
    assert_eq!(nimbus.get("/hello").await.status(), 200);
    assert_eq!(nimbus.get("/moved").await.status(), 404);
    assert_eq!(nimbus.api.app("hello").await.unwrap().versions.len(), 3);

    nimbus.api.delete("hello").await.unwrap();
    assert_eq!(nimbus.get("/hello").await.status(), 404);
    assert!(nimbus.api.apps().await.unwrap().is_empty());
    nimbus.stop().await;
}

#[tokio::test]
async fn restart_restores_every_app_from_the_artifact_cache() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    let echo = guests::c("echo");
    nimbus
        .deploy(&manifest("a", "hello", &["/a"], ""), &[("hello", &hello)])
        .await
        .unwrap();
    nimbus
        .deploy(&manifest("b", "echo", &["/b/..."], ""), &[("echo", &echo)])
        .await
        .unwrap();
    let cache = nimbus.data_dir.path().join("cache");
    let before = artifact_mtimes(&cache);
    assert_eq!(before.len(), 2);

    let nimbus = nimbus.restart().await;
    assert_eq!(nimbus.running().restored, 2);
    assert_eq!(nimbus.get("/a").await.status(), 200);
    let resp = nimbus
        .http
        .post(format!("{}/b/x?y=1", nimbus.gateway_url))
        .body("ping")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-path"], "/b/x?y=1");
    assert_eq!(resp.text().await.unwrap(), "ping");
    assert_eq!(
        artifact_mtimes(&cache),
        before,
        "restart must not recompile"
    );
    nimbus.stop().await;
}

fn artifact_mtimes(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out = Vec::new();
    for engine_dir in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(engine_dir.unwrap().path()).unwrap() {
            let file = file.unwrap();
            out.push((
                file.file_name().to_string_lossy().into_owned(),
                file.metadata().unwrap().modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

async fn deploy_error(nimbus: &Nimbus, manifest: &str, bytes: &[u8]) -> (String, String) {
    let path = nimbus.data_dir.path().join("upload.wasm");
    std::fs::write(&path, bytes).unwrap();
    let err = nimbus
        .deploy(manifest, &[("f", &path)])
        .await
        .expect_err("deploy must fail");
    let api = err
        .downcast_ref::<nimbus_cli::client::ApiError>()
        .unwrap_or_else(|| panic!("not an API error: {err:#}"));
    (api.code.clone(), api.message.clone())
}

#[tokio::test]
async fn bad_components_are_rejected_with_the_reason_and_the_old_version_keeps_serving() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    let m = manifest("app", "f", &["/f"], "");
    nimbus.deploy(&m, &[("f", &hello)]).await.unwrap();

    let (code, msg) = deploy_error(&nimbus, &m, b"definitely not wasm").await;
    assert_eq!(code, "invalid_component");
    assert!(msg.contains("magic bytes"), "{msg}");

    // A core module (empty): `\0asm` version 1.
    let (code, msg) = deploy_error(&nimbus, &m, b"\0asm\x01\0\0\0").await;
    assert_eq!(code, "invalid_component");
    assert!(msg.contains("core WebAssembly module"), "{msg}");

    // An empty component: valid, but exports nothing.
    let (code, msg) = deploy_error(&nimbus, &m, b"\0asm\x0d\0\x01\0").await;
    assert_eq!(code, "invalid_component");
    assert!(msg.contains("wasi:http/incoming-handler"), "{msg}");

    // A component whose body is truncated.
    let full = std::fs::read(&hello).unwrap();
    let (code, msg) = deploy_error(&nimbus, &m, &full[..full.len() / 2]).await;
    assert_eq!(code, "invalid_component");
    assert!(msg.contains("compile"), "{msg}");

    // A component importing an interface the host does not have.
    let wat = "(component (import \"acme:missing/thing@1.0.0\" (instance (export \"f\" (func)))))";
    let bytes = wat_to_wasm(&nimbus, wat);
    let (code, msg) = deploy_error(&nimbus, &m, &bytes).await;
    assert_eq!(code, "invalid_component");
    assert!(msg.contains("acme:missing/thing"), "{msg}");

    let status = nimbus.api.app("app").await.unwrap();
    assert_eq!(status.active_version, 1);
    assert_eq!(nimbus.get("/f").await.status(), 200);
    nimbus.stop().await;
}

fn wat_to_wasm(nimbus: &Nimbus, wat: &str) -> Vec<u8> {
    let src = nimbus.data_dir.path().join("c.wat");
    let out = nimbus.data_dir.path().join("c.wasm");
    std::fs::write(&src, wat).unwrap();
    let status = std::process::Command::new("wasm-tools")
        .arg("parse")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("wasm-tools (run scripts/setup-toolchains.sh)");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn manifest_errors_and_inconsistent_requests_are_rejected() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    let bad = "[app]\nname = \"x\"\n\n[[function]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroutes = [\"/f\"]\nmemory_mb = 0\n";
    let err = nimbus.deploy(bad, &[("f", &hello)]).await.unwrap_err();
    let api = err.downcast_ref::<nimbus_cli::client::ApiError>().unwrap();
    assert_eq!(api.code, "invalid_manifest");
    assert!(api.message.starts_with("nimbus.toml:8:"), "{}", api.message);
    assert!(api.message.contains("memory_mb"), "{}", api.message);

    // A component for a function the manifest does not have.
    let m = manifest("x", "f", &["/f"], "");
    let err = nimbus
        .deploy(&m, &[("f", &hello), ("g", &hello)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`g`"), "{err}");
    nimbus.stop().await;
}

#[tokio::test]
async fn route_conflicts_between_apps_are_rejected_at_deploy() {
    let nimbus = Nimbus::start().await;
    let hello = guests::c("hello");
    nimbus
        .deploy(
            &manifest("one", "f", &["/shared/..."], ""),
            &[("f", &hello)],
        )
        .await
        .unwrap();
    let err = nimbus
        .deploy(
            &manifest("two", "g", &["/shared/..."], ""),
            &[("g", &hello)],
        )
        .await
        .unwrap_err();
    let api = err.downcast_ref::<nimbus_cli::client::ApiError>().unwrap();
    assert_eq!(api.code, "route_conflict");
    assert!(
        api.message.contains("one/f") && api.message.contains("two/g"),
        "{}",
        api.message
    );
    assert!(
        nimbus.api.app("two").await.is_err(),
        "failed first deploy stores nothing"
    );
    assert_eq!(nimbus.get("/shared/x").await.status(), 200);
    nimbus.stop().await;
}

#[tokio::test]
async fn api_requires_the_token_and_blob_names_cannot_escape() {
    let nimbus = Nimbus::start().await;
    let base = nimbus.api.base().to_owned();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/v1/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/v1/apps"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let wrong = http
        .get(format!("{base}/v1/apps"))
        .bearer_auth("nmb_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    for name in ["..%2F..%2Fetc%2Fpasswd", "..", "ABC", &"a".repeat(64)] {
        let resp = http
            .put(format!("{base}/v1/blobs/{name}"))
            .bearer_auth(&nimbus.token)
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 400 || resp.status() == 404,
            "{name}: {}",
            resp.status()
        );
    }
    // Right shape, wrong content: the hash is checked and nothing is stored.
    let digest = "0".repeat(64);
    let resp = http
        .put(format!("{base}/v1/blobs/{digest}"))
        .bearer_auth(&nimbus.token)
        .body("not matching")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!nimbus.api.has_blob(&digest).await.unwrap());
    nimbus.stop().await;
}

#[tokio::test]
async fn a_component_that_cannot_start_under_its_memory_cap_is_rejected_at_deploy() {
    let nimbus = Nimbus::start().await;
    let js = guests::js("guests/js/hello.js");
    // SpiderMonkey's initial linear memory is several MiB: 1 MiB cannot hold it.
    let err = nimbus
        .deploy(
            &manifest("tiny", "f", &["/tiny"], "memory_mb = 1"),
            &[("f", &js)],
        )
        .await
        .unwrap_err();
    let api = err.downcast_ref::<nimbus_cli::client::ApiError>().unwrap();
    assert_eq!(api.code, "invalid_component");
    assert!(
        api.message.contains("cannot be instantiated"),
        "{}",
        api.message
    );
    assert!(nimbus.api.app("tiny").await.is_err());
    assert_eq!(nimbus.get("/tiny").await.status(), 404);
    nimbus.stop().await;
}

#[tokio::test]
async fn a_corrupt_cached_artifact_is_discarded_and_recompiled() {
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("a", "hello", &["/a"], "").await;
    let cache = nimbus.data_dir.path().join("cache");
    let artifacts = artifact_mtimes(&cache);
    assert_eq!(artifacts.len(), 1);
    let engine_dir = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let artifact = engine_dir.join(&artifacts[0].0);

    // As if a crash (or a bad disk) left half a file behind.
    let nimbus = {
        let data = nimbus.data_dir.clone();
        nimbus.stop().await;
        let bytes = std::fs::read(&artifact).unwrap();
        std::fs::write(&artifact, &bytes[..bytes.len() / 2]).unwrap();
        Nimbus::restart_in(data).await
    };
    assert_eq!(nimbus.running().restored, 1);
    assert_eq!(nimbus.get("/a").await.status(), 200);
    let rewritten = std::fs::metadata(&artifact).unwrap().len();
    assert!(rewritten > 0 && artifact_mtimes(&cache)[0].1 != artifacts[0].1);
    nimbus.stop().await;
}
