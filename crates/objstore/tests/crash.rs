//! kill -9 in the middle of a burst of PUTs: every acknowledged object is intact afterwards,
//! nothing partial is visible, and reopening sweeps what the crash left behind.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::StreamExt;
use nimbus_objstore::FsStore;
use nimbus_objstore::store::{ListQuery, ObjectStore};

#[path = "../src/bin/objstore-crash-writer.rs"]
#[allow(dead_code)]
mod writer;

async fn read(store: &FsStore, key: &str) -> Vec<u8> {
    let mut read = store.get("t", "crash", key, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = read.body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn acknowledged_objects_survive_kill_9_and_nothing_partial_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_objstore-crash-writer"))
            .arg(dir.path())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = None;
        for line in BufReader::new(stdout).lines().take(40) {
            acked = Some(line.unwrap().parse::<u64>().unwrap());
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acked = acked.expect("writer acknowledged nothing");

        let store = FsStore::open(dir.path()).expect("store opens after kill -9");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "round {round}: temp files left after reopening"
        );
        // Every acknowledged object, byte for byte.
        for i in 0..=acked {
            assert!(
                read(&store, &format!("r{round}/o{i}")).await == writer::content(round, i),
                "round {round}: acknowledged object {i} lost or damaged"
            );
        }
        // Whatever else is visible (the object in flight may have made it) is complete.
        let page = store
            .list(
                "t",
                "crash",
                ListQuery {
                    prefix: format!("r{round}/"),
                    delimiter: None,
                    after: None,
                    max: 1000,
                },
            )
            .await
            .unwrap();
        for object in &page.objects {
            let i: u64 = object.key.rsplit_once("/o").unwrap().1.parse().unwrap();
            assert!(
                i <= acked + 1,
                "round {round}: object {i} was never written"
            );
            assert!(
                read(&store, &object.key).await == writer::content(round, i),
                "round {round}: visible object {i} is partial"
            );
        }
        // No orphan data files survive the reopen: one file per object.
        let all = store
            .list(
                "t",
                "crash",
                ListQuery {
                    max: 10_000,
                    ..ListQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("data")).unwrap().count(),
            all.objects.len(),
            "round {round}: orphan data files"
        );
    }
}
