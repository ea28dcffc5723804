//! The S3 API against real clients: boto3 and the aws CLI (from the venv that
//! `scripts/setup-s3-clients.sh` creates), talking to a server started in-process on port 0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::Command;

use nimbus_objstore::ObjectService;

fn venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let venv = cache.join("nimbus/s3-clients");
    assert!(
        venv.join("bin/aws").exists(),
        "boto3/aws CLI venv missing at {}: run `bash scripts/setup-s3-clients.sh`",
        venv.display()
    );
    venv
}

struct Server {
    endpoint: String,
    access: String,
    secret: String,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    start_with(Default::default()).await
}

async fn start_with(policy: nimbus_objstore::guard::AuthPolicy) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let key = nimbus_secrets::MasterKey::from_hex(&"07".repeat(32)).unwrap();
    let service = ObjectService::open(dir.path(), nimbus_secrets::Sealer::new(&key)).unwrap();
    let key = service.keys.create("default").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(nimbus_objstore::server::serve(
        listener,
        service.s3_service(policy),
        Default::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        endpoint,
        access: key.access_key_id,
        secret: key.secret_access_key,
        dir,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_walkthrough() {
    let venv = venv();
    let server = start().await;
    let work = tempfile::tempdir().unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/boto3_walkthrough.py");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .args([&server.endpoint, &server.access, &server.secret])
        .arg(work.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("boto3 walkthrough passed"), "{stdout}");
}

async fn run_script(script: &str, server: &Server, args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = tokio::process::Command::new(venv().join("bin/python"))
        .arg(&script)
        .args([&server.endpoint, &server.access, &server.secret])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Control characters in keys, DeleteObjects limits, signature age, presigned-URL lifetime,
/// SigV2 and the credential scope, as boto3 meets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_meets_the_hardened_edges() {
    let server = start().await;
    let stdout = run_script("boto3_hardening.py", &server, &["strict"]).await;
    assert!(stdout.contains("boto3 hardening passed"), "{stdout}");

    let old_clients = start_with(nimbus_objstore::guard::AuthPolicy {
        allow_sigv2: true,
        ..Default::default()
    })
    .await;
    let stdout = run_script("boto3_hardening.py", &old_clients, &["sigv2"]).await;
    assert!(
        stdout.contains("boto3 hardening (sigv2) passed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_copies_lists_and_range_gets() {
    let venv = venv();
    let server = start().await;
    let work = tempfile::tempdir().unwrap();
    // The CLI presigns with SigV2 unless told otherwise, and Nimbus refuses SigV2 by default.
    let cli_config = work.path().join("aws-config");
    std::fs::write(
        &cli_config,
        "[default]\ns3 =\n    signature_version = s3v4\n",
    )
    .unwrap();
    let aws = |args: &[&str]| {
        let mut cmd = Command::new(venv.join("bin/aws"));
        cmd.arg("--endpoint-url")
            .arg(&server.endpoint)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &server.access)
            .env("AWS_SECRET_ACCESS_KEY", &server.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", &cli_config)
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    };
    let run = |args: &[&str]| {
        let aws = aws(args);
        let label = args.join(" ");
        async move {
            let out = tokio::process::Command::from(aws).output().await.unwrap();
            assert!(
                out.status.success(),
                "aws {label} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };

    run(&["s3", "mb", "s3://cli-bucket"]).await;
    // 20 MiB: the CLI switches to multipart (8 MiB parts).
    let big = work.path().join("big.bin");
    let data: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    run(&[
        "s3",
        "cp",
        big.to_str().unwrap(),
        "s3://cli-bucket/dir/big.bin",
    ])
    .await;
    run(&[
        "s3",
        "cp",
        big.to_str().unwrap(),
        "s3://cli-bucket/dir/sub/again.bin",
    ])
    .await;

    let listing = run(&["s3", "ls", "s3://cli-bucket/dir/"]).await;
    assert!(listing.contains("PRE sub/"), "{listing}");
    assert!(
        listing.contains(&format!("{} big.bin", 20 << 20)),
        "{listing}"
    );
    let recursive = run(&["s3", "ls", "--recursive", "s3://cli-bucket"]).await;
    assert_eq!(recursive.lines().count(), 2, "{recursive}");

    // A key with a control character: the CLI lists it (encoding-type=url) like any other.
    let small = work.path().join("small.txt");
    std::fs::write(&small, b"x").unwrap();
    let odd = "ctl/\u{1}odd+key";
    let args = [
        "s3api",
        "put-object",
        "--bucket",
        "cli-bucket",
        "--key",
        odd,
        "--body",
    ];
    run(&[&args[..], &[small.to_str().unwrap()]].concat()).await;
    let listing = run(&["s3", "ls", "s3://cli-bucket/ctl/"]).await;
    assert!(listing.contains("\u{1}odd+key"), "{listing:?}");
    let recursive = run(&["s3", "ls", "--recursive", "s3://cli-bucket"]).await;
    assert_eq!(recursive.lines().count(), 3, "{recursive}");
    run(&[
        "s3api",
        "delete-object",
        "--bucket",
        "cli-bucket",
        "--key",
        odd,
    ])
    .await;

    let back = work.path().join("back.bin");
    run(&[
        "s3",
        "cp",
        "s3://cli-bucket/dir/big.bin",
        back.to_str().unwrap(),
    ])
    .await;
    assert!(
        std::fs::read(&back).unwrap() == data,
        "downloaded bytes differ"
    );

    let part = work.path().join("part.bin");
    let head = run(&[
        "s3api",
        "get-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "dir/big.bin",
        "--range",
        "bytes=1048570-1048589",
        part.to_str().unwrap(),
    ])
    .await;
    assert!(head.contains("bytes 1048570-1048589/20971520"), "{head}");
    assert_eq!(std::fs::read(&part).unwrap(), &data[1_048_570..1_048_590]);

    let presigned = run(&[
        "s3",
        "presign",
        "s3://cli-bucket/dir/big.bin",
        "--expires-in",
        "60",
    ])
    .await;
    let fetched = reqwest::get(presigned.trim()).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().await.unwrap() == data);

    run(&["s3", "rm", "--recursive", "s3://cli-bucket"]).await;
    run(&["s3", "rb", "s3://cli-bucket"]).await;
    assert_eq!(run(&["s3", "ls"]).await.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_upload_leaves_nothing_behind() {
    let venv = venv();
    let server = start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/disconnect.py");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .args([&server.endpoint, &server.access, &server.secret])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The server notices the hang-up asynchronously: give it a bounded time to clean up.
    let tmp = server.dir.path().join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&tmp).unwrap().count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the partial upload's temp file was not removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Only the one complete object has a data file.
    assert_eq!(
        std::fs::read_dir(server.dir.path().join("data"))
            .unwrap()
            .count(),
        1
    );
}
