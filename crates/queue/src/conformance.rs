//! The conformance suite every [`QueueBackend`] must pass.
//!
//! `run` takes a backend and a name unique to this run (queues are named after it, so a
//! backend on a shared server starts from empty queues) and panics with a description of the
//! first broken rule. It is test support, compiled into the library so that every backend's
//! test runs exactly the same checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{NewMessage, QueueBackend, QueueError, QueueId};

const NO_WAIT: Duration = Duration::ZERO;
const LEASE: Duration = Duration::from_secs(30);

fn msg(body: &str) -> NewMessage {
    NewMessage {
        body: Bytes::from(body.to_owned()),
        ..NewMessage::default()
    }
}

/// Runs every check against `backend`.
pub async fn run(backend: Arc<dyn QueueBackend>, run_id: &str) {
    let q = |name: &str| QueueId::new("conformance", run_id, name);
    round_trip(backend.as_ref(), &q("round-trip")).await;
    isolation(backend.as_ref(), &q("iso-a"), &q("iso-b")).await;
    order_and_batches(backend.as_ref(), &q("order")).await;
    limits(backend.as_ref(), &q("limits")).await;
    visibility_timeout(backend.as_ref(), &q("visibility")).await;
    retry_with_delay(backend.as_ref(), &q("retry")).await;
    delayed_send(backend.as_ref(), &q("delayed")).await;
    dead_letter_and_redrive(backend.as_ref(), &q("work"), &q("work-dlq")).await;
    long_poll_wakes_on_send(backend.clone(), &q("long-poll")).await;
    concurrent_consumers(backend.clone(), &q("concurrent")).await;
}

async fn round_trip(b: &dyn QueueBackend, q: &QueueId) {
    let sent = NewMessage {
        body: Bytes::from_static(b"\x00binary\xff"),
        attributes: vec![("content-type".into(), "application/octet-stream".into())],
        ..NewMessage::default()
    };
    let id = b.send(q, sent.clone()).await.unwrap();
    let peeked = b.peek(q, 10).await.unwrap();
    assert_eq!(peeked.len(), 1, "peek shows the message");
    assert_eq!(peeked[0].id, id);
    assert_eq!(peeked[0].attempts, 0, "peek does not count as a delivery");
    let got = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1, "the message is delivered once");
    let m = &got[0].message;
    assert_eq!(
        (m.id.as_str(), &m.body),
        (id.as_str(), &sent.body),
        "id and body kept"
    );
    assert_eq!(m.attributes, sent.attributes, "attributes kept");
    assert_eq!(m.attempts, 1, "first delivery is attempt 1");
    assert!(m.sent_at_ms > 0);
    assert!(
        b.receive(q, 10, LEASE, NO_WAIT).await.unwrap().is_empty(),
        "leased: not visible"
    );
    assert!(
        b.peek(q, 10).await.unwrap().is_empty(),
        "peek skips leased messages"
    );
    let stats = b.stats(q).await.unwrap();
    assert_eq!(
        (stats.ready, stats.in_flight),
        (0, 1),
        "stats while leased: {stats:?}"
    );
    b.ack(q, &got[0].receipt).await.unwrap();
    assert!(
        matches!(b.ack(q, &got[0].receipt).await, Err(QueueError::LeaseLost)),
        "a second ack with the same receipt fails"
    );
    assert_eq!(b.stats(q).await.unwrap().total(), 0, "acked: gone");
}

async fn isolation(b: &dyn QueueBackend, a: &QueueId, other: &QueueId) {
    b.send(a, msg("for a")).await.unwrap();
    assert!(
        b.receive(other, 10, LEASE, NO_WAIT)
            .await
            .unwrap()
            .is_empty(),
        "queues are separate"
    );
    let got = b.receive(a, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        b.ack(other, &got[0].receipt).await.is_err(),
        "a receipt is only good for its own queue"
    );
    b.ack(a, &got[0].receipt).await.unwrap();
}

async fn order_and_batches(b: &dyn QueueBackend, q: &QueueId) {
    for i in 0..25 {
        b.send(q, msg(&format!("m{i}"))).await.unwrap();
    }
    assert_eq!(b.stats(q).await.unwrap().ready, 25);
    let mut bodies = Vec::new();
    loop {
        let batch = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 10, "receive returns at most max");
        for d in batch {
            bodies.push(String::from_utf8(d.message.body.to_vec()).unwrap());
            b.ack(q, &d.receipt).await.unwrap();
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "one consumer sees messages in send order");
}

async fn limits(b: &dyn QueueBackend, q: &QueueId) {
    let big = NewMessage {
        body: Bytes::from(vec![b'x'; b.max_message_bytes() + 1]),
        ..NewMessage::default()
    };
    assert!(
        matches!(
            b.send(q, big).await,
            Err(QueueError::MessageTooLarge { .. })
        ),
        "oversized message refused"
    );
    let largest = NewMessage {
        body: Bytes::from(vec![b'x'; b.max_message_bytes()]),
        ..NewMessage::default()
    };
    b.send(q, largest).await.unwrap();
    let got = b.receive(q, 1, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(
        got[0].message.body.len(),
        b.max_message_bytes(),
        "largest message intact"
    );
    b.ack(q, &got[0].receipt).await.unwrap();
    assert!(matches!(
        b.ack(q, &crate::Receipt("nonsense".into())).await,
        Err(QueueError::BadReceipt(_) | QueueError::LeaseLost)
    ));

    // Capacity: the third send to a queue of two is refused, and accepted again once one is
    // acknowledged.
    let capped = |body: &str| NewMessage {
        capacity: Some(2),
        ..msg(body)
    };
    b.send(q, capped("1")).await.unwrap();
    b.send(q, capped("2")).await.unwrap();
    assert!(
        matches!(b.send(q, capped("3")).await, Err(QueueError::Full { .. })),
        "a full queue refuses sends"
    );
    let got = b.receive(q, 1, LEASE, NO_WAIT).await.unwrap();
    assert!(
        matches!(b.send(q, capped("3")).await, Err(QueueError::Full { .. })),
        "in-flight messages count toward capacity"
    );
    b.ack(q, &got[0].receipt).await.unwrap();
    b.send(q, capped("3")).await.unwrap();
    let rest = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(rest.len(), 2);
    for d in rest {
        b.ack(q, &d.receipt).await.unwrap();
    }
}

async fn visibility_timeout(b: &dyn QueueBackend, q: &QueueId) {
    b.send(q, msg("lease me")).await.unwrap();
    let first = b
        .receive(q, 1, Duration::from_millis(300), NO_WAIT)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let started = Instant::now();
    // Not acked: it comes back once the lease runs out, as attempt 2.
    let again = b
        .receive(q, 1, LEASE, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "redelivered after the visibility timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "not before the lease ran out"
    );
    assert_eq!(again[0].message.attempts, 2);
    assert!(
        matches!(
            b.ack(q, &first[0].receipt).await,
            Err(QueueError::LeaseLost)
        ),
        "the expired receipt no longer acks"
    );
    b.ack(q, &again[0].receipt).await.unwrap();
}

async fn retry_with_delay(b: &dyn QueueBackend, q: &QueueId) {
    b.send(q, msg("flaky")).await.unwrap();
    let got = b.receive(q, 1, LEASE, NO_WAIT).await.unwrap();
    b.retry(q, &got[0].receipt, Duration::from_millis(400), "boom")
        .await
        .unwrap();
    assert!(
        b.receive(q, 1, LEASE, NO_WAIT).await.unwrap().is_empty(),
        "not before the delay"
    );
    assert_eq!(b.stats(q).await.unwrap().delayed, 1, "counted as delayed");
    let started = Instant::now();
    let again = b
        .receive(q, 1, LEASE, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "visible after the delay");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(again[0].message.attempts, 2);
    assert_eq!(again[0].message.last_error.as_deref(), Some("boom"));
    b.ack(q, &again[0].receipt).await.unwrap();
}

async fn delayed_send(b: &dyn QueueBackend, q: &QueueId) {
    let started = Instant::now();
    b.send(
        q,
        NewMessage {
            delay: Duration::from_millis(500),
            ..msg("later")
        },
    )
    .await
    .unwrap();
    b.send(q, msg("now")).await.unwrap();
    let first = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(first.len(), 1, "only the undelayed message is visible");
    assert_eq!(first[0].message.body, Bytes::from_static(b"now"));
    b.ack(q, &first[0].receipt).await.unwrap();
    let later = b
        .receive(q, 10, LEASE, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "delayed message came early"
    );
    b.ack(q, &later[0].receipt).await.unwrap();
}

async fn dead_letter_and_redrive(b: &dyn QueueBackend, q: &QueueId, dlq: &QueueId) {
    b.send(q, msg("poison")).await.unwrap();
    b.send(q, msg("fine")).await.unwrap();
    let got = b.receive(q, 1, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(got[0].message.body, Bytes::from_static(b"poison"));
    b.dead_letter(q, &got[0].receipt, dlq, "always fails")
        .await
        .unwrap();
    let next = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(next.len(), 1, "the rest of the queue flows");
    assert_eq!(next[0].message.body, Bytes::from_static(b"fine"));
    b.ack(q, &next[0].receipt).await.unwrap();

    let dead = b.peek(dlq, 10).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "the poison message is in the dead-letter queue"
    );
    assert_eq!(dead[0].id, got[0].message.id, "with its id");
    assert_eq!(dead[0].last_error.as_deref(), Some("always fails"));
    assert_eq!(
        dead[0].dead_lettered_from.as_deref(),
        Some(q.to_string().as_str())
    );
    assert_eq!(dead[0].attempts, 1);

    assert_eq!(b.redrive(dlq, q, 100).await.unwrap(), 1);
    assert_eq!(
        b.stats(dlq).await.unwrap().total(),
        0,
        "redriven out of the DLQ"
    );
    let back = b.receive(q, 10, LEASE, NO_WAIT).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message.body, Bytes::from_static(b"poison"));
    assert_eq!(back[0].message.attempts, 1, "attempts reset by redrive");
    b.ack(q, &back[0].receipt).await.unwrap();
}

async fn long_poll_wakes_on_send(b: Arc<dyn QueueBackend>, q: &QueueId) {
    let (b2, q2) = (b.clone(), q.clone());
    let waiter =
        tokio::spawn(async move { b2.receive(&q2, 1, LEASE, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent_at = Instant::now();
    b.send(q, msg("wake up")).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "the waiting receive got the message");
    assert!(
        sent_at.elapsed() < Duration::from_secs(2),
        "long poll woke promptly, not at its timeout"
    );
    b.ack(q, &got[0].receipt).await.unwrap();
    let started = Instant::now();
    assert!(
        b.receive(q, 1, LEASE, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "an empty long poll waits"
    );
}

async fn concurrent_consumers(b: Arc<dyn QueueBackend>, q: &QueueId) {
    const N: usize = 400;
    let mut sends = Vec::new();
    for i in 0..N {
        let (b, q) = (b.clone(), q.clone());
        sends.push(tokio::spawn(async move {
            b.send(&q, msg(&format!("c{i}"))).await
        }));
    }
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let mut consumers = Vec::new();
    for _ in 0..8 {
        let (b, q) = (b.clone(), q.clone());
        consumers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let batch = b
                    .receive(&q, 7, LEASE, Duration::from_millis(300))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return seen;
                }
                for d in batch {
                    seen.push(d.message.id.clone());
                    b.ack(&q, &d.receipt).await.unwrap();
                }
            }
        }));
    }
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        N,
        "every message delivered once to 8 concurrent consumers"
    );
    assert_eq!(unique.len(), N, "no duplicates while leases hold");
}
