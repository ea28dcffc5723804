//! Test helper for `tests/crash.rs`: PUTs objects (of varying size, up to 2 MiB, content derived
//! from their number) into an embedded store as fast as it can, and prints the number of each
//! object after the store acknowledged it, until it is killed.
//! Usage: `objstore-crash-writer <dir> <round>`.

use std::io::Write;

use bytes::Bytes;
use nimbus_objstore::FsStore;
use nimbus_objstore::store::{ObjectMeta, ObjectStore};

/// The content of object `i` of `round`: its size varies from 1 KiB to 2 MiB.
pub fn content(round: u64, i: u64) -> Vec<u8> {
    let size = 1024 + ((i * 7919) % (2 << 20));
    (0..size)
        .map(|b| ((b + i * 31 + round * 7) % 251) as u8)
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (dir, round) = match (args.next(), args.next()) {
        (Some(dir), Some(round)) => (dir, round.parse::<u64>()?),
        _ => return Err("usage: objstore-crash-writer <dir> <round>".into()),
    };
    let store = FsStore::open(std::path::Path::new(&dir))?;
    if store.head_bucket("t", "crash").await.is_err() {
        store.create_bucket("t", "crash").await?;
    }
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let data = content(round, i);
        // Two chunks, so a kill can land between them.
        let half = data.len() / 2;
        let chunks = vec![
            Ok(Bytes::copy_from_slice(&data[..half])),
            Ok(Bytes::copy_from_slice(&data[half..])),
        ];
        store
            .put(
                "t",
                "crash",
                &format!("r{round}/o{i}"),
                ObjectMeta::default(),
                Box::pin(futures::stream::iter(chunks)),
            )
            .await?;
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}
