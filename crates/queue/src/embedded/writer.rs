//! The writer thread of the embedded backend: group commit, as in the embedded key-value store.
//!
//! It takes every job that is waiting, applies their operations in arrival order inside one redb
//! write transaction, commits once (fsync), then runs each job's `after_commit` (which makes new
//! messages visible in the index) and answers it. One fsync is shared by everything that was
//! queued, and the index only ever shows messages that are on disk.

use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::record::Record;
use crate::QueueError;

/// `(queue key, seq)` → the message's [`Record`] as JSON.
pub(super) const META: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_meta");
/// `(queue key, seq)` → the message's body.
pub(super) const BODY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_body");

/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 1024;

/// Changes a stored record in place.
pub(super) type Edit = Box<dyn FnOnce(&mut Record) + Send>;

/// One change to the tables.
pub(super) enum Op {
    /// A new message.
    Put {
        queue: String,
        seq: u64,
        record: Record,
        body: Bytes,
    },
    /// A message is gone (acknowledged).
    Delete { queue: String, seq: u64 },
    /// A message's record changes (retry bookkeeping).
    Edit { queue: String, seq: u64, edit: Edit },
    /// A message moves to another queue (dead-letter, redrive), its record edited on the way.
    Move {
        from: String,
        from_seq: u64,
        to: String,
        to_seq: u64,
        edit: Edit,
    },
}

/// A batch of operations committed together, with what to do once they are durable.
pub(super) struct Job {
    pub ops: Vec<Op>,
    pub after_commit: Option<Box<dyn FnOnce() + Send>>,
    pub reply: oneshot::Sender<Result<(), QueueError>>,
}

pub(super) fn backend(e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// Drains what is queued, applies it in one transaction, commits, answers.
pub(super) fn write_loop(db: &Database, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut ops = Vec::new();
        let mut finish = Vec::with_capacity(group.len());
        for job in group {
            ops.extend(job.ops);
            finish.push((job.after_commit, job.reply));
        }
        let result = apply(db, ops);
        for (after_commit, reply) in finish {
            if result.is_ok()
                && let Some(after) = after_commit
            {
                after();
            }
            // The caller may have gone away; what it asked for is committed all the same.
            let _ = reply.send(result.as_ref().map(drop).map_err(backend));
        }
    }
}

/// Applies `ops` in order in one transaction and commits it.
fn apply(db: &Database, ops: Vec<Op>) -> Result<(), QueueError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let mut bodies = txn.open_table(BODY).map_err(backend)?;
        for op in ops {
            match op {
                Op::Put {
                    queue,
                    seq,
                    record,
                    body,
                } => {
                    let json = record.encode()?;
                    meta.insert((queue.as_str(), seq), json.as_slice())
                        .map_err(backend)?;
                    bodies
                        .insert((queue.as_str(), seq), body.as_ref())
                        .map_err(backend)?;
                }
                Op::Delete { queue, seq } => {
                    meta.remove((queue.as_str(), seq)).map_err(backend)?;
                    bodies.remove((queue.as_str(), seq)).map_err(backend)?;
                }
                Op::Edit { queue, seq, edit } => {
                    let current = meta.get((queue.as_str(), seq)).map_err(backend)?;
                    // Gone already (acknowledged by a later lease holder): nothing to edit.
                    let Some(current) = current.map(|v| Record::decode(v.value())) else {
                        continue;
                    };
                    let mut record = current?;
                    edit(&mut record);
                    let json = record.encode()?;
                    meta.insert((queue.as_str(), seq), json.as_slice())
                        .map_err(backend)?;
                }
                Op::Move {
                    from,
                    from_seq,
                    to,
                    to_seq,
                    edit,
                } => {
                    let current = meta.remove((from.as_str(), from_seq)).map_err(backend)?;
                    let Some(current) = current.map(|v| Record::decode(v.value())) else {
                        continue;
                    };
                    let mut record = current?;
                    let body = bodies
                        .remove((from.as_str(), from_seq))
                        .map_err(backend)?
                        .map(|v| v.value().to_vec())
                        .unwrap_or_default();
                    edit(&mut record);
                    let json = record.encode()?;
                    meta.insert((to.as_str(), to_seq), json.as_slice())
                        .map_err(backend)?;
                    bodies
                        .insert((to.as_str(), to_seq), body.as_slice())
                        .map_err(backend)?;
                }
            }
        }
    }
    txn.commit().map_err(backend)
}
