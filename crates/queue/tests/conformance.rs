//! The conformance suite against every backend.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use nimbus_queue::conformance;
use nimbus_queue::embedded::EmbeddedQueues;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let queues = EmbeddedQueues::open(&dir.path().join("queues.redb")).unwrap();
    conformance::run(Arc::new(queues), "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backend_conforms() {
    let queues = nimbus_queue::nats::NatsQueues::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS with JetStream on 127.0.0.1:4222 (see .ci/run)");
    // A fresh app name per run: queues of earlier runs do not interfere.
    let run = format!("nats-{}", std::process::id());
    conformance::run(Arc::new(queues), &run).await;
}

/// Messages, their attempts and the dead-letter queue survive closing and reopening; leases
/// do not (a message in flight when the process stopped is visible again).
#[tokio::test]
async fn embedded_state_survives_reopen() {
    use std::time::Duration;

    use bytes::Bytes;
    use nimbus_queue::{NewMessage, QueueBackend, QueueId};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    let q = QueueId::new("t", "app", "jobs");
    let dlq = QueueId::new("t", "app", "jobs-dlq");
    let lease = Duration::from_secs(60);
    {
        let b = EmbeddedQueues::open(&path).unwrap();
        for body in ["a", "b", "c"] {
            let m = NewMessage {
                body: Bytes::from(body),
                ..NewMessage::default()
            };
            b.send(&q, m).await.unwrap();
        }
        let got = b.receive(&q, 3, lease, Duration::ZERO).await.unwrap();
        b.retry(&q, &got[0].receipt, Duration::ZERO, "first failure")
            .await
            .unwrap();
        b.dead_letter(&q, &got[1].receipt, &dlq, "poison")
            .await
            .unwrap();
        // got[2] stays leased when the backend closes.
    }
    let b = EmbeddedQueues::open(&path).unwrap();
    let stats = b.stats(&q).await.unwrap();
    assert_eq!((stats.ready, stats.in_flight), (2, 0), "{stats:?}");
    let got = b.receive(&q, 10, lease, Duration::ZERO).await.unwrap();
    let mut seen: Vec<_> = got
        .iter()
        .map(|d| {
            (
                d.message.body.clone(),
                d.message.attempts,
                d.message.last_error.clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (Bytes::from("a"), 2, Some("first failure".into())),
            (Bytes::from("c"), 1, None),
        ]
    );
    let dead = b.peek(&dlq, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, Bytes::from("b"));
}
