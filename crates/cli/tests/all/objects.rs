//! Object storage end to end, as the issue's "done when" reads: a function stores uploads in a
//! bucket through `wasi:blobstore` and counts visits in KV; the same bucket is read and written
//! with the aws CLI through the S3 API.

use std::process::Command;

use crate::guests;
use crate::harness::Nimbus;

pub(crate) struct Aws {
    endpoint: String,
    id: String,
    secret: String,
}

impl Aws {
    pub(crate) async fn for_nimbus(nimbus: &Nimbus) -> Self {
        let key = nimbus.api.key_create().await.unwrap();
        Self {
            endpoint: format!("http://{}", nimbus.running().s3_addr),
            id: key.access_key_id,
            secret: key.secret_access_key,
        }
    }

    pub(crate) async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(crate::cli::aws_cli());
        cmd.arg("--endpoint-url")
            .arg(&self.endpoint)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let out = tokio::process::Command::from(cmd).output().await.unwrap();
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_stores_uploads_that_the_aws_cli_reads_and_the_other_way_round() {
    let (manifest, component) = guests::example("uploads-py", "files");
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("files", &component)])
        .await
        .unwrap();
    let url = |path: &str| format!("{}{path}", nimbus.gateway_url);
    let http = &nimbus.http;

    // Upload through the function: a small file and a 12 MiB one (streamed).
    let resp = http
        .put(url("/files/report.txt"))
        .body("quarterly numbers\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let big: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let resp = http
        .put(url("/files/big.bin"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["size"], 12 << 20);

    // Read back through the function.
    let back = http.get(url("/files/big.bin")).send().await.unwrap();
    assert_eq!(back.status(), 200);
    assert!(
        back.bytes().await.unwrap() == big,
        "download differs from upload"
    );
    let listing: serde_json::Value = http
        .get(url("/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["files"][0]["name"], "big.bin");
    assert_eq!(listing["files"][1]["name"], "report.txt");
    assert_eq!(listing["files"][1]["size"], 18);
    assert_eq!(listing["listed"], 1);

    // The same bucket through the S3 API, with the aws CLI.
    let aws = Aws::for_nimbus(&nimbus).await;
    let ls = aws.run(&["s3", "ls", "s3://uploads/"]).await;
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("18 report.txt") && ls.contains(&format!("{} big.bin", 12 << 20)),
        "{ls}"
    );
    let cat = aws.run(&["s3", "cp", "s3://uploads/report.txt", "-"]).await;
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "quarterly numbers\n");
    let dir = tempfile::tempdir().unwrap();
    let from_cli = dir.path().join("from-cli.txt");
    std::fs::write(&from_cli, "written by the aws CLI\n").unwrap();
    aws.run(&[
        "s3",
        "cp",
        from_cli.to_str().unwrap(),
        "s3://uploads/from-cli.txt",
    ])
    .await;
    let got = http.get(url("/files/from-cli.txt")).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "written by the aws CLI\n");

    // The function counted its visits in the key-value store.
    let listing: serde_json::Value = http
        .get(url("/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["files"].as_array().unwrap().len(), 3);
    assert_eq!(listing["listed"], 2);
    let uploads = nimbus.api.kv_get("stats", "uploads").await.unwrap();
    assert_eq!(uploads.as_deref(), Some(&b"2"[..]));

    // Delete through the function; gone for the CLI too.
    assert_eq!(
        http.delete(url("/files/report.txt"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let ls = aws.run(&["s3", "ls", "s3://uploads/"]).await;
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("report.txt"));
    assert_eq!(
        http.get(url("/files/report.txt"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cannot_open_a_bucket_it_did_not_declare() {
    let (manifest, component) = guests::example("uploads-py", "files");
    let manifest = manifest.replace(r#"buckets = ["uploads"]"#, r#"buckets = ["other"]"#);
    assert!(manifest.contains(r#"["other"]"#));
    let nimbus = Nimbus::start().await;
    nimbus
        .deploy(&manifest, &[("files", &component)])
        .await
        .unwrap();
    let resp = nimbus.get("/files").await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("access denied") && error.contains("uploads"),
        "{error}"
    );
    // Nothing was created behind its back.
    let aws = Aws::for_nimbus(&nimbus).await;
    let ls = aws.run(&["s3", "ls"]).await;
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "");
    nimbus.stop().await;
}

/// A function that writes an object through wasi:blobstore but never calls `finish` leaves no
/// object behind — not even an empty or partial one; a finished write is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_blobstore_write_stores_nothing() {
    let component = guests::py("guests/py/blobdrop", "nimbus-guest");
    let nimbus = Nimbus::start().await;
    let manifest = crate::harness::manifest(
        "blobdrop",
        "writer",
        &["/finished/...", "/unfinished/..."],
        "buckets = [\"scratch\"]",
    );
    nimbus
        .deploy(&manifest, &[("writer", &component)])
        .await
        .unwrap();
    let put = |path: &str| {
        nimbus
            .http
            .put(format!("{}{path}", nimbus.gateway_url))
            .send()
    };
    assert_eq!(put("/unfinished/half.txt").await.unwrap().status(), 200);
    assert_eq!(put("/finished/whole.txt").await.unwrap().status(), 200);
    let aws = Aws::for_nimbus(&nimbus).await;
    // The finished object shows up; give the abandoned write as long again to appear.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ls = aws.run(&["s3", "ls", "s3://scratch/"]).await;
        if String::from_utf8_lossy(&ls.stdout).contains("whole.txt") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "finished object missing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ls = aws.run(&["s3", "ls", "s3://scratch/"]).await;
    let listing = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(
        !listing.contains("half.txt"),
        "an unfinished write became an object: {listing}"
    );
    nimbus.stop().await;
}
