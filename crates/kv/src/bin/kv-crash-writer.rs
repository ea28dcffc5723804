//! Test helper for `tests/crash.rs`: writes keys to an embedded store as fast as it can and
//! prints the number of each write after it was acknowledged, until it is killed.
//! Usage: `kv-crash-writer <store file>`.

use std::io::Write;

use bytes::Bytes;
use nimbus_kv::embedded::EmbeddedKv;
use nimbus_kv::{KvBackend, StoreId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: kv-crash-writer <store file>")?;
    let kv = EmbeddedKv::open(std::path::Path::new(&path))?;
    let store = StoreId::new("crash", "s");
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        kv.set(&store, &format!("k{i}"), Bytes::from(i.to_string()), None)
            .await?;
        kv.increment(&store, "count", 1).await?;
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}
