//! Every event is a CloudEvents 1.0 event (built and parsed with the cloudevents-sdk crate),
//! converted to the engine's [`nimbus_engine::Event`] record at delivery.
//!
//! A queue message can carry a CloudEvent of its own: its attributes are stored with the
//! message under their HTTP binary-mode names (`ce-id`, `ce-source`, `ce-type`, …) and its data
//! as the body, whether it was sent in binary or structured mode. Such a message is delivered as
//! that event; any other message becomes a `dev.nimbus.queue.message` event whose id is the
//! message id. Nimbus adds the extension `attempt` (the delivery number).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use nimbus_queue::Message;

/// Type of an event made from a plain queue message.
pub const QUEUE_MESSAGE_TYPE: &str = "dev.nimbus.queue.message";
/// Type of a cron tick.
pub const CRON_TICK_TYPE: &str = "dev.nimbus.cron.tick";
/// Prefix of message attributes that hold CloudEvents context attributes.
pub const CE_PREFIX: &str = "ce-";
/// The message attribute holding the body's media type.
pub const CONTENT_TYPE: &str = "content-type";

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event a queue message is delivered as.
pub fn queue_event(app: &str, queue: &str, message: &Message) -> Result<Event, String> {
    let attr = |name: &str| {
        message
            .attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let sent = DateTime::<Utc>::from_timestamp_millis(
        i64::try_from(message.sent_at_ms).unwrap_or(i64::MAX),
    )
    .unwrap_or_default();
    let mut builder = EventBuilderV10::new()
        .id(attr("ce-id").unwrap_or(&message.id))
        .source(
            attr("ce-source")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("/apps/{app}/queues/{queue}")),
        )
        .ty(attr("ce-type").unwrap_or(QUEUE_MESSAGE_TYPE));
    builder = match attr("ce-time") {
        Some(time) => builder.time(time),
        None => builder.time(sent),
    };
    if let Some(subject) = attr("ce-subject") {
        builder = builder.subject(subject);
    }
    for (name, value) in &message.attributes {
        let Some(ext) = name.strip_prefix(CE_PREFIX) else {
            continue;
        };
        let ext = ext.to_ascii_lowercase();
        if matches!(
            ext.as_str(),
            "id" | "source"
                | "type"
                | "time"
                | "subject"
                | "specversion"
                | "datacontenttype"
                | "dataschema"
                | "attempt"
        ) {
            continue;
        }
        builder = builder.extension(&ext, value.as_str());
    }
    builder = builder.extension("attempt", i64::from(message.attempts));
    if !message.body.is_empty() {
        let content_type = attr(CONTENT_TYPE).unwrap_or("application/octet-stream");
        builder = builder.data(content_type, message.body.to_vec());
    }
    builder
        .build()
        .map_err(|e| format!("not a valid CloudEvent: {e}"))
}

/// The event of one cron tick: its id is the same for the same tick of the same schedule, so a
/// handler can recognise a repeat.
pub fn cron_event(
    app: &str,
    function: &str,
    schedule: &str,
    tick: DateTime<Utc>,
    catch_up: bool,
) -> Result<Event, String> {
    let mut builder = EventBuilderV10::new()
        .id(format!("{app}/{function}/{}", tick.timestamp_millis()))
        .source(format!("/apps/{app}/cron/{function}"))
        .ty(CRON_TICK_TYPE)
        .subject(schedule)
        .time(tick);
    if catch_up {
        builder = builder.extension("catchup", true);
    }
    builder
        .build()
        .map_err(|e| format!("not a valid CloudEvent: {e}"))
}

/// Message attributes and body that carry `event` through a queue (see the module docs).
pub fn to_message(mut event: Event) -> (Vec<(String, String)>, Bytes) {
    let mut attributes = vec![
        ("ce-id".to_owned(), event.id().to_owned()),
        ("ce-source".to_owned(), event.source().to_string()),
        ("ce-type".to_owned(), event.ty().to_owned()),
    ];
    if let Some(subject) = event.subject() {
        attributes.push(("ce-subject".into(), subject.to_owned()));
    }
    if let Some(time) = event.time() {
        attributes.push(("ce-time".into(), rfc3339(time)));
    }
    for (name, value) in event.iter_extensions() {
        attributes.push((format!("{CE_PREFIX}{name}"), value.to_string()));
    }
    let (content_type, _, data) = event.take_data();
    if let Some(content_type) = content_type {
        attributes.push((CONTENT_TYPE.into(), content_type));
    }
    (attributes, data.map(data_bytes).unwrap_or_default())
}

fn data_bytes(data: Data) -> Bytes {
    match data {
        Data::Binary(bytes) => Bytes::from(bytes),
        Data::String(s) => Bytes::from(s),
        Data::Json(value) => Bytes::from(value.to_string()),
    }
}

/// The engine's record of `event`.
pub fn to_engine(event: &Event) -> nimbus_engine::Event {
    nimbus_engine::Event {
        id: event.id().to_owned(),
        source: event.source().to_string(),
        ty: event.ty().to_owned(),
        subject: event.subject().map(str::to_owned),
        time: event.time().map(rfc3339),
        datacontenttype: event.datacontenttype().map(str::to_owned),
        data: event.data().cloned().map(|d| data_bytes(d).to_vec()),
        extensions: event
            .iter_extensions()
            .map(|(name, value)| {
                let value = match value {
                    ExtensionValue::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (name.to_owned(), value)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn message(attributes: Vec<(&str, &str)>, body: &str) -> Message {
        Message {
            id: "m-1".into(),
            body: Bytes::from(body.to_owned()),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            sent_at_ms: 1_700_000_000_123,
            attempts: 2,
            last_error: None,
            dead_lettered_from: None,
        }
    }

    #[test]
    fn a_plain_message_becomes_a_queue_event() {
        let event = queue_event(
            "shop",
            "orders",
            &message(vec![("content-type", "application/json")], "{\"n\":1}"),
        )
        .unwrap();
        let e = to_engine(&event);
        assert_eq!(e.id, "m-1");
        assert_eq!(e.source, "/apps/shop/queues/orders");
        assert_eq!(e.ty, QUEUE_MESSAGE_TYPE);
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(e.data.as_deref(), Some(&b"{\"n\":1}"[..]));
        assert_eq!(e.extensions, vec![("attempt".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn a_cloudevent_survives_a_trip_through_a_queue() {
        let sent = EventBuilderV10::new()
            .id("order-7")
            .source("https://shop.example/orders")
            .ty("com.example.order.created")
            .subject("order/7")
            .time("2026-11-24T10:00:00Z")
            .extension("tenantid", "acme")
            .data("text/plain", "hello")
            .build()
            .unwrap();
        let (attributes, body) = to_message(sent);
        let mut m = message(vec![], "");
        m.attributes = attributes;
        m.body = body;
        let e = to_engine(&queue_event("shop", "orders", &m).unwrap());
        assert_eq!(e.id, "order-7");
        assert_eq!(e.source, "https://shop.example/orders");
        assert_eq!(e.ty, "com.example.order.created");
        assert_eq!(e.subject.as_deref(), Some("order/7"));
        assert_eq!(e.time.as_deref(), Some("2026-11-24T10:00:00.000Z"));
        assert_eq!(e.datacontenttype.as_deref(), Some("text/plain"));
        assert_eq!(e.data.as_deref(), Some(&b"hello"[..]));
        let mut ext = e.extensions.clone();
        ext.sort();
        assert_eq!(
            ext,
            vec![
                ("attempt".to_owned(), "2".to_owned()),
                ("tenantid".to_owned(), "acme".to_owned())
            ]
        );
    }

    #[test]
    fn cron_ticks_have_stable_ids() {
        let tick = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let a = to_engine(&cron_event("shop", "nightly", "0 3 * * *", tick, true).unwrap());
        let b = to_engine(&cron_event("shop", "nightly", "0 3 * * *", tick, false).unwrap());
        assert_eq!(a.id, b.id);
        assert_eq!(a.ty, CRON_TICK_TYPE);
        assert_eq!(a.subject.as_deref(), Some("0 3 * * *"));
        assert_eq!(
            a.extensions,
            vec![("catchup".to_owned(), "true".to_owned())]
        );
        assert!(b.extensions.is_empty());
    }
}
