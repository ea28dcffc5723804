//! The conformance suite against every backend: embedded (redb), Redis (127.0.0.1:6379) and NATS
//! JetStream (127.0.0.1:4222); every machine of this project runs both servers, and CI checks
//! that they answer.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::sync::Arc;

use nimbus_kv::conformance;
use nimbus_kv::embedded::EmbeddedKv;
use nimbus_kv::redis_backend::RedisKv;

fn unique_tenant() -> String {
    format!(
        "conformance-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
    conformance::run(Arc::new(kv), &unique_tenant())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_conforms() {
    let url =
        std::env::var("NIMBUS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let kv = RedisKv::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required for this test: {e}"));
    conformance::run(Arc::new(kv), &unique_tenant())
        .await
        .unwrap();
}

#[tokio::test]
async fn embedded_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let store = nimbus_kv::StoreId::new("app", "s");
    {
        let kv = EmbeddedKv::open(&path).unwrap();
        use nimbus_kv::KvBackend;
        kv.set(&store, "k", bytes::Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        kv.increment(&store, "n", 7).await.unwrap();
    }
    let kv = EmbeddedKv::open(&path).unwrap();
    use nimbus_kv::KvBackend;
    assert_eq!(
        kv.get(&store, "k").await.unwrap().as_deref(),
        Some(b"v".as_slice())
    );
    assert_eq!(kv.increment(&store, "n", 1).await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backend_conforms() {
    let url = std::env::var("NIMBUS_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let kv = nimbus_kv::nats_backend::NatsKv::connect(&url, "nimbus-kv-conformance")
        .await
        .unwrap_or_else(|e| panic!("NATS with JetStream at {url} is required for this test: {e}"));
    conformance::run(Arc::new(kv), &unique_tenant())
        .await
        .unwrap();
}
