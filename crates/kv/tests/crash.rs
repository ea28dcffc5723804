//! kill -9 in the middle of a burst of writes: every acknowledged write is there afterwards,
//! and the store opens cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nimbus_kv::embedded::EmbeddedKv;
use nimbus_kv::{KvBackend, StoreId};

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kv-crash-writer"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = None;
        // Let it get well into the burst, then SIGKILL it mid-write.
        for line in BufReader::new(stdout).lines().take(300) {
            acked = Some(line.unwrap().parse::<u64>().unwrap());
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acked = acked.expect("writer acknowledged nothing");

        let kv = EmbeddedKv::open(&path).expect("store opens after kill -9");
        let store = StoreId::new("crash", "s");
        for i in 0..=acked {
            let value = kv.get(&store, &format!("k{i}")).await.unwrap();
            assert_eq!(
                value.as_deref(),
                Some(i.to_string().as_bytes()),
                "round {round}: acknowledged write k{i} lost"
            );
        }
        let count: u64 = std::str::from_utf8(&kv.get(&store, "count").await.unwrap().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        // Each round restarts numbering at 0 and increments the shared counter once per
        // acknowledged key, so the counter is at least the acknowledged total of all rounds.
        assert!(
            count > acked,
            "round {round}: counter {count} behind acknowledged {acked}"
        );
    }
}
