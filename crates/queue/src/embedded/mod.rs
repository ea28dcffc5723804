//! The embedded backend: two redb tables under the data dir and an in-memory index.
//!
//! - **Disk**: `queue_meta` and `queue_body`, keyed by `(queue key, seq)`. `seq` is a global
//!   counter, so a queue's keys are in send order.
//! - **Memory** ([`index::QueueIndex`], one per queue): when each message becomes visible, how
//!   many deliveries it had, and the leases of those in flight. Rebuilt from `queue_meta` at
//!   open; leases are never written (see the index's docs).
//! - **Writes** go through one writer thread with group commit ([`writer`]). A send is
//!   acknowledged once committed and only then enters the index, so a consumer never sees a
//!   message that could still be lost. Acks, retries and dead-letters change the index at once
//!   (under the lease check) and are acknowledged once committed.
//! - **Reads** (a delivery's body, peeks) run inline on the caller's task.

mod index;
mod record;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{Notify, mpsc, oneshot};

use self::index::{QueueIndex, Taken};
use self::record::Record;
use self::writer::{BODY, Edit, Job, META, Op, backend, write_loop};
use crate::{
    Delivery, MAX_DELAY, MAX_DEPTH, Message, NewMessage, QueueBackend, QueueError, QueueId,
    QueueStats, Receipt, check, millis, now_ms,
};

/// The embedded queue backend. Cheap to clone; the database closes when the last clone is
/// dropped (after the writer thread has finished what was queued).
#[derive(Clone)]
pub struct EmbeddedQueues {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    indexes: Arc<Mutex<HashMap<String, QueueIndex>>>,
    next_seq: AtomicU64,
    next_token: AtomicU64,
    writer: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedQueues {
    /// Opens (creating) the queue file, rebuilds the index and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let db = nimbus_redb::create(path, nimbus_redb::cache::HOT_READ_CACHE).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(META).map_err(backend)?;
        txn.open_table(BODY).map_err(backend)?;
        txn.commit().map_err(backend)?;

        let mut indexes: HashMap<String, QueueIndex> = HashMap::new();
        let mut max_seq = 0;
        {
            let txn = db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            for row in meta.iter().map_err(backend)? {
                let (key, value) = row.map_err(backend)?;
                let (queue, seq) = key.value();
                let record = Record::decode(value.value())?;
                max_seq = max_seq.max(seq);
                indexes.entry(queue.to_owned()).or_default().insert(
                    seq,
                    record.visible_at_ms,
                    record.message.attempts,
                );
            }
        }

        let db = Arc::new(db);
        let (writer, jobs) = mpsc::unbounded_channel();
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("nimbus-queue-writer".into())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| QueueError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                indexes: Arc::new(Mutex::new(indexes)),
                next_seq: AtomicU64::new(max_seq + 1),
                next_token: AtomicU64::new(1),
                writer: Some(writer),
                thread: Some(thread),
            }),
        })
    }

    fn indexes(&self) -> MutexGuard<'_, HashMap<String, QueueIndex>> {
        // A panic while holding the lock cannot leave the index half-changed in a way that
        // matters more than losing the whole process would; keep serving.
        self.inner
            .indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `ops` for the writer and waits until they are committed.
    async fn commit(
        &self,
        ops: Vec<Op>,
        after_commit: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<(), QueueError> {
        let stopped = || QueueError::Backend("the writer thread has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job {
                ops,
                after_commit,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// A closure that adds committed messages to `queue`'s index and wakes its consumers.
    fn inserter(
        &self,
        queue: String,
        entries: Vec<(u64, u64, u32)>,
        reserved: usize,
    ) -> Box<dyn FnOnce() + Send> {
        let indexes = self.inner.indexes.clone();
        Box::new(move || {
            let mut indexes = indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = indexes.entry(queue).or_default();
            for _ in 0..reserved {
                index.unreserve();
            }
            for (seq, visible_at, attempts) in entries {
                index.insert(seq, visible_at, attempts);
            }
            index.notify.notify_waiters();
        })
    }

    /// Reads the records and bodies of just-leased messages.
    fn read(&self, queue: &str, taken: &[Taken]) -> Result<Vec<Delivery>, QueueError> {
        let txn = self.inner.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let bodies = txn.open_table(BODY).map_err(backend)?;
        let mut out = Vec::with_capacity(taken.len());
        for t in taken {
            // A row can be gone if the lease ran out at once and another consumer acked it.
            let Some(row) = meta.get((queue, t.seq)).map_err(backend)? else {
                continue;
            };
            let mut message = Record::decode(row.value())?.message;
            message.attempts = t.attempts;
            message.body = bodies
                .get((queue, t.seq))
                .map_err(backend)?
                .map(|b| Bytes::copy_from_slice(b.value()))
                .unwrap_or_default();
            out.push(Delivery {
                message,
                receipt: Receipt(format!("{}:{}", t.seq, t.token)),
            });
        }
        Ok(out)
    }

    /// Ends the lease named by `receipt`; returns the message's seq and index entry.
    fn release(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
    ) -> Result<(u64, index::Entry), QueueError> {
        let (seq, token) = parse_receipt(receipt)?;
        let mut indexes = self.indexes();
        let entry = indexes
            .get_mut(&queue.key())
            .and_then(|index| index.release(seq, token))
            .ok_or(QueueError::LeaseLost)?;
        Ok((seq, entry))
    }
}

fn parse_receipt(receipt: &Receipt) -> Result<(u64, u64), QueueError> {
    let bad = || QueueError::BadReceipt(receipt.0.clone());
    let (seq, token) = receipt.0.split_once(':').ok_or_else(bad)?;
    Ok((
        seq.parse().map_err(|_| bad())?,
        token.parse().map_err(|_| bad())?,
    ))
}

fn check_duration(what: &str, d: Duration) -> Result<u64, QueueError> {
    if d > MAX_DELAY {
        return Err(QueueError::Backend(format!(
            "{what} of {d:?} exceeds the maximum of {MAX_DELAY:?}"
        )));
    }
    Ok(millis(d))
}

#[async_trait]
impl QueueBackend for EmbeddedQueues {
    async fn send(&self, queue: &QueueId, message: NewMessage) -> Result<String, QueueError> {
        check(&message, crate::MAX_MESSAGE_BYTES)?;
        let delay = check_duration("a delay", message.delay)?;
        let key = queue.key();
        {
            let mut indexes = self.indexes();
            let index = indexes.entry(key.clone()).or_default();
            let capacity = message.capacity.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
            if index.depth() >= capacity {
                return Err(QueueError::Full {
                    queue: queue.to_string(),
                    depth: index.depth(),
                });
            }
            index.reserve();
        }
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let seq = self.seq();
        let record = Record {
            message: Message {
                id: id.clone(),
                body: Bytes::new(),
                attributes: message.attributes,
                sent_at_ms: now,
                attempts: 0,
                last_error: None,
                dead_lettered_from: None,
            },
            visible_at_ms: now + delay,
        };
        let insert = self.inserter(key.clone(), vec![(seq, now + delay, 0)], 1);
        let op = Op::Put {
            queue: key.clone(),
            seq,
            record,
            body: message.body,
        };
        match self.commit(vec![op], Some(insert)).await {
            Ok(()) => Ok(id),
            Err(e) => {
                if let Some(index) = self.indexes().get_mut(&key) {
                    index.unreserve();
                }
                Err(e)
            }
        }
    }

    async fn receive(
        &self,
        queue: &QueueId,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let visibility = check_duration("a visibility timeout", visibility)?;
        let key = queue.key();
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            let notify: Arc<Notify>;
            let (taken, wake) = {
                let mut indexes = self.indexes();
                let index = indexes.entry(key.clone()).or_default();
                notify = index.notify.clone();
                let now = now_ms();
                let token = &self.inner.next_token;
                let taken = index.take(now, max.max(1), now + visibility, || {
                    token.fetch_add(1, Ordering::Relaxed)
                });
                (taken, index.next_wake().map(|at| at.saturating_sub(now)))
            };
            // Register for wake-ups before looking again, so a send in between is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !taken.is_empty() {
                let deliveries = self.read(&key, &taken)?;
                if !deliveries.is_empty() {
                    return Ok(deliveries);
                }
            }
            let now = tokio::time::Instant::now();
            if now >= give_up {
                return Ok(Vec::new());
            }
            let mut until = give_up;
            if let Some(ms) = wake {
                until = until.min(now + Duration::from_millis(ms.max(1)));
            }
            // Something may have become visible between taking the lock and registering.
            let recheck = self
                .indexes()
                .get(&key)
                .and_then(QueueIndex::next_wake)
                .is_some_and(|at| at <= now_ms());
            if recheck {
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, queue: &QueueId, receipt: &Receipt) -> Result<(), QueueError> {
        let (seq, _) = self.release(queue, receipt)?;
        let key = queue.key();
        if let Some(index) = self.indexes().get_mut(&key) {
            index.remove(seq);
        }
        self.commit(vec![Op::Delete { queue: key, seq }], None)
            .await
    }

    async fn retry(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        let delay = check_duration("a retry delay", delay)?;
        let (seq, entry) = self.release(queue, receipt)?;
        let key = queue.key();
        let visible_at = now_ms() + delay;
        if let Some(index) = self.indexes().get_mut(&key) {
            index.requeue(seq, visible_at);
            index.notify.notify_waiters();
        }
        let error = error.to_owned();
        let edit: Edit = Box::new(move |record| {
            record.message.attempts = entry.attempts;
            record.message.last_error = Some(error);
            record.visible_at_ms = visible_at;
        });
        self.commit(
            vec![Op::Edit {
                queue: key,
                seq,
                edit,
            }],
            None,
        )
        .await
    }

    async fn dead_letter(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        dead_letter_queue: &QueueId,
        error: &str,
    ) -> Result<(), QueueError> {
        let (seq, entry) = self.release(queue, receipt)?;
        let from = queue.key();
        if let Some(index) = self.indexes().get_mut(&from) {
            index.remove(seq);
        }
        let to = dead_letter_queue.key();
        let to_seq = self.seq();
        let now = now_ms();
        let (error, source) = (error.to_owned(), queue.to_string());
        let edit: Edit = Box::new(move |record| {
            record.message.attempts = entry.attempts;
            record.message.last_error = Some(error);
            record.message.dead_lettered_from = Some(source);
            record.visible_at_ms = now;
        });
        let insert = self.inserter(to.clone(), vec![(to_seq, now, entry.attempts)], 0);
        let op = Op::Move {
            from,
            from_seq: seq,
            to,
            to_seq,
            edit,
        };
        self.commit(vec![op], Some(insert)).await
    }

    async fn peek(&self, queue: &QueueId, limit: usize) -> Result<Vec<Message>, QueueError> {
        let key = queue.key();
        let idle = match self.indexes().get_mut(&key) {
            Some(index) => index.idle(now_ms(), limit),
            None => return Ok(Vec::new()),
        };
        let txn = self.inner.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let bodies = txn.open_table(BODY).map_err(backend)?;
        let mut out = Vec::with_capacity(idle.len());
        for (seq, entry) in idle {
            let Some(row) = meta.get((key.as_str(), seq)).map_err(backend)? else {
                continue;
            };
            let mut message = Record::decode(row.value())?.message;
            message.attempts = entry.attempts;
            message.body = bodies
                .get((key.as_str(), seq))
                .map_err(backend)?
                .map(|b| Bytes::copy_from_slice(b.value()))
                .unwrap_or_default();
            out.push(message);
        }
        Ok(out)
    }

    async fn stats(&self, queue: &QueueId) -> Result<QueueStats, QueueError> {
        let (ready, delayed, in_flight) = self
            .indexes()
            .get_mut(&queue.key())
            .map_or((0, 0, 0), |index| index.counts(now_ms()));
        Ok(QueueStats {
            ready,
            delayed,
            in_flight,
        })
    }

    async fn redrive(&self, from: &QueueId, to: &QueueId, limit: usize) -> Result<u64, QueueError> {
        let (from_key, to_key) = (from.key(), to.key());
        let now = now_ms();
        let moving: Vec<u64> = {
            let mut indexes = self.indexes();
            let Some(index) = indexes.get_mut(&from_key) else {
                return Ok(0);
            };
            let seqs: Vec<u64> = index.idle(now, limit).into_iter().map(|(s, _)| s).collect();
            for seq in &seqs {
                index.remove(*seq);
            }
            seqs
        };
        if moving.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::with_capacity(moving.len());
        let mut entries = Vec::with_capacity(moving.len());
        for from_seq in &moving {
            let to_seq = self.seq();
            entries.push((to_seq, now, 0));
            let edit: Edit = Box::new(move |record| {
                record.message.attempts = 0;
                record.message.last_error = None;
                record.message.dead_lettered_from = None;
                record.visible_at_ms = now;
            });
            ops.push(Op::Move {
                from: from_key.clone(),
                from_seq: *from_seq,
                to: to_key.clone(),
                to_seq,
                edit,
            });
        }
        let insert = self.inserter(to_key, entries, 0);
        self.commit(ops, Some(insert)).await?;
        Ok(u64::try_from(moving.len()).unwrap_or(u64::MAX))
    }
}
