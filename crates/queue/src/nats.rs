//! The NATS JetStream backend: for running Nimbus on a NATS cluster instead of one data dir.
//!
//! - One stream, `NIMBUS_QUEUES` (work-queue retention, file storage), subjects
//!   `nimbusq.<h>` where `<h>` is a hash of the queue key; one durable pull consumer per queue
//!   (`q<h>`, explicit acks, `ack_wait` = the visibility timeout). A message is gone once acked.
//! - Metadata travels in headers: `Nimbus-Id`, `Nimbus-Sent-At`, `Nimbus-Attrs` (JSON), and for
//!   delayed sends `Nimbus-Not-Before` — JetStream 2.9 cannot schedule a message, so a consumer
//!   that receives one early naks it with the remaining delay (not counted as an attempt).
//!   Dead-lettered messages carry `Nimbus-Attempts`, `Nimbus-Last-Error`, `Nimbus-Dead-From`.
//! - Attempts are JetStream's delivery count (minus early deliveries of delayed messages).
//!   Retries are naks with a delay. Acks wait for the server's confirmation.
//! - Leases, and a retried message's last error, are kept in this process: a receipt is only
//!   good in the process that received it (as with the embedded backend), and the last error of
//!   a retry is not visible to another process (it is recorded for good when the message is
//!   dead-lettered).
//! - `peek` reads the stream directly (skipping messages this process holds); `stats` combines
//!   the consumer's counters with this process's leases and retry delays.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::{
    Delivery, MAX_DELAY, MAX_DEPTH, Message, NewMessage, QueueBackend, QueueError, QueueId,
    QueueStats, Receipt, check, millis, now_ms,
};

const STREAM: &str = "NIMBUS_QUEUES";
const ID: &str = "Nimbus-Id";
const SENT_AT: &str = "Nimbus-Sent-At";
const ATTRS: &str = "Nimbus-Attrs";
const NOT_BEFORE: &str = "Nimbus-Not-Before";
const ATTEMPTS: &str = "Nimbus-Attempts";
const LAST_ERROR: &str = "Nimbus-Last-Error";
const DEAD_FROM: &str = "Nimbus-Dead-From";

fn backend(e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// A message this process holds.
struct Lease {
    delivered: i64,
    deadline: Instant,
    reply: String,
}

#[derive(Default)]
struct Local {
    /// (queue key, stream sequence) → the current lease.
    leases: HashMap<(String, u64), Lease>,
    /// Early deliveries of delayed messages, not counted as attempts.
    early: HashMap<(String, u64), i64>,
    /// Retried messages: when they are due again, and their last error.
    retried: HashMap<(String, u64), (Instant, String)>,
    /// Each queue's consumer and the visibility timeout in force for it.
    consumers: HashMap<String, (PullConsumer, Duration)>,
}

type PullConsumer = consumer::Consumer<consumer::pull::Config>;

/// The NATS JetStream queue backend.
pub struct NatsQueues {
    js: jetstream::Context,
    stream: stream::Stream,
    client: async_nats::Client,
    local: Mutex<Local>,
}

fn token(queue: &QueueId) -> String {
    let digest = Sha256::digest(queue.key().as_bytes());
    hex::encode(&digest[..16])
}

fn subject(queue: &QueueId) -> String {
    format!("nimbusq.{}", token(queue))
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

impl NatsQueues {
    /// Connects to `url` and creates the stream if it is missing.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        let client = async_nats::connect(url).await.map_err(backend)?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["nimbusq.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(backend)?;
        Ok(Self {
            js,
            stream,
            client,
            local: Mutex::new(Local::default()),
        })
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The queue's consumer, created as needed, and the visibility timeout in force. A new
    /// timeout is applied only while nothing is in flight: JetStream reschedules pending
    /// redeliveries with the new value, which would stretch the leases already handed out.
    async fn consumer(
        &self,
        queue: &QueueId,
        visibility: Option<Duration>,
    ) -> Result<(PullConsumer, Duration), QueueError> {
        let key = queue.key();
        let known = self.local().consumers.get(&key).cloned();
        let wanted = visibility
            .or(known.as_ref().map(|(_, d)| *d))
            .unwrap_or(Duration::from_secs(30));
        if let Some((consumer, current)) = known
            && (current == wanted || visibility.is_none())
        {
            return Ok((consumer, current));
        }
        let name = format!("q{}", token(queue));
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject(queue),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: wanted,
            max_deliver: -1,
            max_ack_pending: -1,
            ..Default::default()
        };
        let existing: Result<PullConsumer, _> = self.stream.get_consumer(&name).await;
        let (consumer, in_force) = match existing {
            Ok(mut c) => {
                let info = c.info().await.map_err(backend)?;
                let current = info.config.ack_wait;
                if current == wanted || info.num_ack_pending > 0 {
                    (c, current)
                } else {
                    // Creating a durable consumer that exists updates its editable settings.
                    let c = self.stream.create_consumer(config).await.map_err(backend)?;
                    (c, wanted)
                }
            }
            Err(_) => (
                self.stream.create_consumer(config).await.map_err(backend)?,
                wanted,
            ),
        };
        self.local()
            .consumers
            .insert(key, (consumer.clone(), in_force));
        Ok((consumer, in_force))
    }

    async fn publish(
        &self,
        queue: &QueueId,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), QueueError> {
        self.js
            .publish_with_headers(subject(queue), headers, body)
            .await
            .map_err(backend)?
            .await
            .map_err(backend)
            .map(drop)
    }

    fn release(&self, queue: &QueueId, receipt: &Receipt) -> Result<(u64, Lease), QueueError> {
        let bad = || QueueError::BadReceipt(receipt.0.clone());
        let (seq, delivered) = receipt.0.split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let delivered: i64 = delivered.parse().map_err(|_| bad())?;
        let mut local = self.local();
        let key = (queue.key(), seq);
        match local.leases.get(&key) {
            Some(l) if l.delivered == delivered && l.deadline > Instant::now() => {}
            _ => return Err(QueueError::LeaseLost),
        }
        let lease = local.leases.remove(&key).ok_or(QueueError::LeaseLost)?;
        Ok((seq, lease))
    }

    async fn reply(&self, reply: String, kind: AckKind) -> Result<(), QueueError> {
        self.client
            .request(reply, Bytes::from(kind))
            .await
            .map_err(backend)
            .map(drop)
    }

    fn message_of(headers: Option<&HeaderMap>, body: Bytes, attempts: u32) -> Message {
        Message {
            id: header(headers, ID).unwrap_or_default().to_owned(),
            body,
            attributes: header(headers, ATTRS)
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
            sent_at_ms: header(headers, SENT_AT)
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
            attempts,
            last_error: header(headers, LAST_ERROR).map(str::to_owned),
            dead_lettered_from: header(headers, DEAD_FROM).map(str::to_owned),
        }
    }

    fn headers(message: &Message, not_before: Option<u64>) -> Result<HeaderMap, QueueError> {
        let mut headers = HeaderMap::new();
        headers.insert(ID, message.id.as_str());
        headers.insert(SENT_AT, message.sent_at_ms.to_string().as_str());
        let attrs = serde_json::to_string(&message.attributes).map_err(backend)?;
        headers.insert(ATTRS, attrs.as_str());
        if let Some(at) = not_before {
            headers.insert(NOT_BEFORE, at.to_string().as_str());
        }
        Ok(headers)
    }
}

/// Room kept for the headers Nimbus adds (ids, times, attributes, errors).
const HEADER_ROOM: usize = 16 * 1024;

#[async_trait]
impl QueueBackend for NatsQueues {
    fn max_message_bytes(&self) -> usize {
        let payload = self.client.server_info().max_payload;
        payload
            .saturating_sub(HEADER_ROOM)
            .min(crate::MAX_MESSAGE_BYTES)
    }

    async fn send(&self, queue: &QueueId, message: NewMessage) -> Result<String, QueueError> {
        check(&message, self.max_message_bytes())?;
        if message.delay > MAX_DELAY {
            return Err(QueueError::Backend(format!(
                "a delay of {:?} exceeds the maximum of {MAX_DELAY:?}",
                message.delay
            )));
        }
        let capacity = message.capacity.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let (mut consumer, _) = self.consumer(queue, None).await?;
        let info = consumer.info().await.map_err(backend)?;
        let depth = usize::try_from(info.num_pending).unwrap_or(usize::MAX) + info.num_ack_pending;
        if depth >= capacity {
            return Err(QueueError::Full {
                queue: queue.to_string(),
                depth,
            });
        }
        let now = now_ms();
        let stored = Message {
            id: uuid::Uuid::now_v7().to_string(),
            body: Bytes::new(),
            attributes: message.attributes,
            sent_at_ms: now,
            attempts: 0,
            last_error: None,
            dead_lettered_from: None,
        };
        let not_before = (!message.delay.is_zero()).then(|| now + millis(message.delay));
        let headers = Self::headers(&stored, not_before)?;
        self.publish(queue, headers, message.body).await?;
        Ok(stored.id)
    }

    async fn receive(
        &self,
        queue: &QueueId,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let (consumer, visibility) = self.consumer(queue, Some(visibility)).await?;
        let visibility = visibility.min(MAX_DELAY);
        let give_up = Instant::now() + wait;
        let key = queue.key();
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            // A pull request stays open until it has all it asked for or expires, so the long
            // poll asks for one message; what else is available is then fetched without waiting.
            let mut first = Vec::new();
            if left >= Duration::from_millis(10) {
                let mut one = consumer
                    .batch()
                    .max_messages(1)
                    .expires(left)
                    .messages()
                    .await
                    .map_err(backend)?;
                while let Some(next) = one.next().await {
                    first.push(next.map_err(backend)?);
                }
            }
            let rest = max.max(1).saturating_sub(first.len());
            let mut batch = if rest > 0 && (first.len() == 1 || left < Duration::from_millis(10)) {
                Some(
                    consumer
                        .fetch()
                        .max_messages(rest)
                        .messages()
                        .await
                        .map_err(backend)?,
                )
            } else {
                None
            };
            let mut messages = first;
            if let Some(batch) = batch.as_mut() {
                while let Some(next) = batch.next().await {
                    messages.push(next.map_err(backend)?);
                }
            }
            let mut out = Vec::new();
            for message in messages {
                let (seq, delivered) = {
                    let info = message.info().map_err(backend)?;
                    (info.stream_sequence, info.delivered)
                };
                let headers = message.headers.as_ref();
                let now = now_ms();
                if let Some(at) = header(headers, NOT_BEFORE).and_then(|s| s.parse::<u64>().ok())
                    && at > now
                {
                    *self.local().early.entry((key.clone(), seq)).or_default() += 1;
                    let delay = Duration::from_millis(at - now);
                    message
                        .ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(backend)?;
                    continue;
                }
                let reply = message
                    .reply
                    .as_ref()
                    .map(|r| r.to_string())
                    .ok_or_else(|| backend("a JetStream message without a reply subject"))?;
                let mut local = self.local();
                let early = local.early.get(&(key.clone(), seq)).copied().unwrap_or(0);
                let attempts = u32::try_from((delivered - early).max(1)).unwrap_or(u32::MAX);
                let mut m = Self::message_of(headers, message.payload.clone(), attempts);
                if let Some((_, error)) = local.retried.remove(&(key.clone(), seq)) {
                    m.last_error = Some(error);
                }
                local.leases.insert(
                    (key.clone(), seq),
                    Lease {
                        delivered,
                        deadline: Instant::now() + visibility,
                        reply,
                    },
                );
                out.push(Delivery {
                    message: m,
                    receipt: Receipt(format!("{seq}:{delivered}")),
                });
            }
            if !out.is_empty() || Instant::now() + Duration::from_millis(10) >= give_up {
                return Ok(out);
            }
        }
    }

    async fn ack(&self, queue: &QueueId, receipt: &Receipt) -> Result<(), QueueError> {
        let (seq, lease) = self.release(queue, receipt)?;
        self.local().early.remove(&(queue.key(), seq));
        self.reply(lease.reply, AckKind::Ack).await
    }

    async fn retry(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        delay: Duration,
        error: &str,
    ) -> Result<(), QueueError> {
        let (seq, lease) = self.release(queue, receipt)?;
        self.local().retried.insert(
            (queue.key(), seq),
            (Instant::now() + delay, error.to_owned()),
        );
        self.reply(lease.reply, AckKind::Nak(Some(delay))).await
    }

    async fn dead_letter(
        &self,
        queue: &QueueId,
        receipt: &Receipt,
        dead_letter_queue: &QueueId,
        error: &str,
    ) -> Result<(), QueueError> {
        let (seq, lease) = self.release(queue, receipt)?;
        let raw = self.stream.direct_get(seq).await.map_err(backend)?;
        let attempts = u32::try_from(lease.delivered).unwrap_or(u32::MAX);
        let mut message = Self::message_of(Some(&raw.headers), Bytes::new(), attempts);
        message.last_error = Some(error.to_owned());
        let mut headers = Self::headers(&message, None)?;
        headers.insert(ATTEMPTS, attempts.to_string().as_str());
        headers.insert(LAST_ERROR, error);
        headers.insert(DEAD_FROM, queue.to_string().as_str());
        self.publish(dead_letter_queue, headers, raw.payload)
            .await?;
        self.local().early.remove(&(queue.key(), seq));
        self.reply(lease.reply, AckKind::Ack).await
    }

    async fn peek(&self, queue: &QueueId, limit: usize) -> Result<Vec<Message>, QueueError> {
        let stream = &self.stream;
        let subject = subject(queue);
        let key = queue.key();
        let mut out = Vec::new();
        let mut from = 1;
        while out.len() < limit {
            let raw = match stream
                .direct_get_next_for_subject(&subject, Some(from))
                .await
            {
                Ok(raw) => raw,
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(backend(e)),
            };
            let headers = raw.headers.as_ref();
            let sequence = headers
                .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| backend("a direct get without Nats-Sequence"))?;
            from = sequence + 1;
            if self.local().leases.contains_key(&(key.clone(), sequence)) {
                continue;
            }
            let attempts = header(headers, ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            out.push(Self::message_of(headers, raw.payload.clone(), attempts));
        }
        Ok(out)
    }

    async fn stats(&self, queue: &QueueId) -> Result<QueueStats, QueueError> {
        let (mut consumer, _) = self.consumer(queue, None).await?;
        let info = consumer.info().await.map_err(backend)?;
        let key = queue.key();
        let now = Instant::now();
        let local = self.local();
        let in_flight = local
            .leases
            .iter()
            .filter(|((q, _), l)| *q == key && l.deadline > now)
            .count() as u64;
        let delayed = local
            .retried
            .iter()
            .filter(|((q, _), (due, _))| *q == key && *due > now)
            .count() as u64;
        let unacked = info.num_ack_pending as u64;
        Ok(QueueStats {
            ready: info.num_pending + unacked.saturating_sub(in_flight + delayed),
            delayed,
            in_flight: in_flight.min(unacked),
        })
    }

    async fn redrive(&self, from: &QueueId, to: &QueueId, limit: usize) -> Result<u64, QueueError> {
        let (consumer, _) = self.consumer(from, None).await?;
        let mut moved = 0u64;
        while (moved as usize) < limit {
            let want = (limit - moved as usize).min(100);
            let mut batch = consumer
                .fetch()
                .max_messages(want)
                .messages()
                .await
                .map_err(backend)?;
            let mut got = 0;
            while let Some(next) = batch.next().await {
                let message = next.map_err(backend)?;
                got += 1;
                let mut m = Self::message_of(message.headers.as_ref(), Bytes::new(), 0);
                m.last_error = None;
                m.dead_lettered_from = None;
                let headers = Self::headers(&m, None)?;
                self.publish(to, headers, message.payload.clone()).await?;
                message.double_ack().await.map_err(backend)?;
                moved += 1;
            }
            if got == 0 {
                break;
            }
        }
        Ok(moved)
    }
}
