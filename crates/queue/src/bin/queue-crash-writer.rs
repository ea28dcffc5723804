//! Test helper for `tests/crash.rs`: sends messages to an embedded queue as fast as it can,
//! 16 at a time, and prints the number of each send after it was acknowledged, until killed.
//! Usage: `queue-crash-writer <queue file>`.

use std::io::Write;

use bytes::Bytes;
use nimbus_queue::embedded::EmbeddedQueues;
use nimbus_queue::{NewMessage, QueueBackend, QueueId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: queue-crash-writer <queue file>")?;
    let queues = EmbeddedQueues::open(std::path::Path::new(&path))?;
    let queue = QueueId::new("crash", "app", "q");
    let (tx, mut acked) = tokio::sync::mpsc::unbounded_channel::<u64>();
    for worker in 0..16u64 {
        let (queues, queue, tx) = (queues.clone(), queue.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0u64.. {
                let n = i * 16 + worker;
                let message = NewMessage {
                    body: Bytes::from(n.to_string()),
                    ..NewMessage::default()
                };
                if queues.send(&queue, message).await.is_err() || tx.send(n).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(n) = acked.recv().await {
        writeln!(out, "{n}")?;
        out.flush()?;
    }
    Ok(())
}
