//! kill -9 in the middle of a burst of sends: every acknowledged message is in the queue
//! afterwards, and the queue opens cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nimbus_queue::embedded::EmbeddedQueues;
use nimbus_queue::{QueueBackend, QueueId};

#[tokio::test]
async fn acknowledged_sends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    let queue = QueueId::new("crash", "app", "q");
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_queue-crash-writer"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = HashSet::new();
        // Let it get well into the burst, then SIGKILL it mid-write.
        for line in BufReader::new(stdout).lines().take(2000) {
            acked.insert(line.unwrap());
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert_eq!(acked.len(), 2000);

        let queues = EmbeddedQueues::open(&path).expect("queue opens after kill -9");
        let mut present = HashSet::new();
        loop {
            let batch = queues
                .receive(&queue, 1000, Duration::from_secs(60), Duration::ZERO)
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                present.insert(String::from_utf8(d.message.body.to_vec()).unwrap());
                queues.ack(&queue, &d.receipt).await.unwrap();
            }
        }
        let lost: Vec<_> = acked.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged sends lost: {lost:?}"
        );
    }
}
