//! `[[queue]]`, `[[trigger.queue]]` and `[[trigger.cron]]`: validation and defaults.
//!
//! Triggers name functions and queues declared elsewhere in the file; an unknown name is an
//! error that lists what does exist. One consumer per queue: two `[[trigger.queue]]` on the
//! same queue would compete for its messages.

use std::collections::HashMap;
use std::ops::Range;

use serde_spanned::Spanned;

use crate::app::{CronTrigger, Function, MissedTicks, Queue, QueueTrigger, Triggers};
use crate::change_triggers::{Watched, change_trigger};
use crate::cron::Schedule;
use crate::error::ManifestError;
use crate::schema::{RawCronTrigger, RawQueue, RawQueueTrigger, RawTriggers};
use crate::validate::{Source, check_resource_name, ranged};

/// Validates the queues and triggers of an app whose functions are already validated.
pub(crate) fn validate(
    raw_queues: Option<Spanned<Vec<Spanned<RawQueue>>>>,
    raw_triggers: Option<Spanned<RawTriggers>>,
    functions: &[Function],
    queue_refs: Vec<(Spanned<String>, String)>,
    src: &Source<'_>,
) -> Result<(Vec<Queue>, Triggers), ManifestError> {
    let queues = validate_queues(raw_queues, src)?;
    let names = Names {
        functions,
        queues: &queues,
    };
    // Queues named outside the triggers (`[function.async]` destinations).
    for (value, field) in &queue_refs {
        names.queue(value, field.clone(), src)?;
    }
    let Some(raw) = raw_triggers.map(Spanned::into_inner) else {
        return Ok((queues, Triggers::default()));
    };
    let mut triggers = Triggers::default();
    let mut consumed: HashMap<String, Range<usize>> = HashMap::new();
    for (index, trigger) in raw.queue.unwrap_or_default().into_iter().enumerate() {
        let trigger = queue_trigger(trigger, index, &names, &mut consumed, src)?;
        triggers.queue.push(trigger);
    }
    for (index, trigger) in raw.cron.unwrap_or_default().into_iter().enumerate() {
        triggers
            .cron
            .push(cron_trigger(trigger, index, &names, src)?);
    }
    for (index, trigger) in raw.object.unwrap_or_default().into_iter().enumerate() {
        triggers.object.push(change_trigger(
            trigger,
            index,
            Watched::Bucket,
            &names,
            src,
        )?);
    }
    for (index, trigger) in raw.kv.unwrap_or_default().into_iter().enumerate() {
        triggers
            .kv
            .push(change_trigger(trigger, index, Watched::Store, &names, src)?);
    }
    Ok((queues, triggers))
}

fn validate_queues(
    raw: Option<Spanned<Vec<Spanned<RawQueue>>>>,
    src: &Source<'_>,
) -> Result<Vec<Queue>, ManifestError> {
    let mut queues = Vec::new();
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    for (index, raw) in raw
        .map(Spanned::into_inner)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let (span, raw) = (raw.span(), raw.into_inner());
        let numbered = format!("queue #{}", index + 1);
        let Some(name) = raw.name else {
            return Err(src.error(
                span,
                format!("{numbered}: name"),
                "is required, e.g. name = \"orders\"",
            ));
        };
        check_resource_name(name.get_ref())
            .map_err(|m| src.error(name.span(), format!("{numbered}: name"), m))?;
        if let Some(first) = seen.get(name.get_ref()) {
            return Err(src.error(
                name.span(),
                format!("{numbered}: name"),
                format!(
                    "another queue is already named \"{}\" (line {}); queue names must be unique",
                    name.get_ref(),
                    src.line(first)
                ),
            ));
        }
        seen.insert(name.get_ref().clone(), name.span());
        let at = format!("queue \"{}\"", name.get_ref());
        let max_message_bytes = ranged(
            raw.max_message_bytes.as_ref(),
            &format!("{at}: max_message_bytes"),
            Queue::MAX_MESSAGE_BYTES_RANGE,
            Queue::DEFAULT_MAX_MESSAGE_BYTES.into(),
            src,
        )?;
        let max_messages = ranged(
            raw.max_messages.as_ref(),
            &format!("{at}: max_messages"),
            Queue::MAX_MESSAGES_RANGE,
            Queue::DEFAULT_MAX_MESSAGES.into(),
            src,
        )?;
        queues.push(Queue {
            name: name.into_inner(),
            max_message_bytes: u32::try_from(max_message_bytes)
                .unwrap_or(Queue::DEFAULT_MAX_MESSAGE_BYTES),
            max_messages: u32::try_from(max_messages).unwrap_or(Queue::DEFAULT_MAX_MESSAGES),
        });
    }
    Ok(queues)
}

/// What triggers may name.
pub(crate) struct Names<'a> {
    functions: &'a [Function],
    queues: &'a [Queue],
}

impl Names<'_> {
    pub(crate) fn function(
        &self,
        value: Option<Spanned<String>>,
        trigger_span: Range<usize>,
        at: &str,
        src: &Source<'_>,
    ) -> Result<(String, &Function), ManifestError> {
        let field = format!("{at}: function");
        let Some(value) = value else {
            return Err(src.error(trigger_span, field, "is required: the function to invoke"));
        };
        match self.functions.iter().find(|f| &f.name == value.get_ref()) {
            Some(f) => Ok((value.into_inner(), f)),
            None => {
                let known: Vec<&str> = self.functions.iter().map(|f| f.name.as_str()).collect();
                Err(src.error(
                    value.span(),
                    field,
                    format!(
                        "no [[function]] named `{}`; the app's functions are: {}",
                        value.get_ref(),
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    pub(crate) fn queue(
        &self,
        value: &Spanned<String>,
        field: String,
        src: &Source<'_>,
    ) -> Result<String, ManifestError> {
        if self.queues.iter().any(|q| &q.name == value.get_ref()) {
            return Ok(value.get_ref().clone());
        }
        let known = if self.queues.is_empty() {
            "the app declares none (add a [[queue]] table)".to_owned()
        } else {
            let names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
            format!("the app's queues are: {}", names.join(", "))
        };
        Err(src.error(
            value.span(),
            field,
            format!("no [[queue]] named `{}`; {known}", value.get_ref()),
        ))
    }
}

fn queue_trigger(
    raw: Spanned<RawQueueTrigger>,
    index: usize,
    names: &Names<'_>,
    consumed: &mut HashMap<String, Range<usize>>,
    src: &Source<'_>,
) -> Result<QueueTrigger, ManifestError> {
    let (span, raw) = (raw.span(), raw.into_inner());
    let at = format!("trigger.queue #{}", index + 1);
    let (function, f) = names.function(raw.function, span.clone(), &at, src)?;
    let Some(queue_value) = raw.queue else {
        return Err(src.error(
            span,
            format!("{at}: queue"),
            "is required: the [[queue]] whose messages invoke the function",
        ));
    };
    let queue = names.queue(&queue_value, format!("{at}: queue"), src)?;
    if let Some(first) = consumed.get(&queue) {
        return Err(src.error(
            queue_value.span(),
            format!("{at}: queue"),
            format!(
                "queue `{queue}` already has a trigger at line {}; a queue has one consumer",
                src.line(first)
            ),
        ));
    }
    consumed.insert(queue.clone(), queue_value.span());
    let dead_letter_queue = match raw.dead_letter_queue {
        None => None,
        Some(dlq) => {
            let name = names.queue(&dlq, format!("{at}: dead_letter_queue"), src)?;
            if name == queue {
                return Err(src.error(
                    dlq.span(),
                    format!("{at}: dead_letter_queue"),
                    format!("must be another queue than `{queue}`, the one consumed"),
                ));
            }
            Some(name)
        }
    };
    let field = |key: &str| format!("{at}: {key}");
    let int = |value: &Option<Spanned<crate::schema::Integer>>, key: &str, range, default| {
        ranged(value.as_ref(), &field(key), range, default, src)
    };
    let batch_size = int(
        &raw.batch_size,
        "batch_size",
        QueueTrigger::BATCH_SIZE_RANGE,
        QueueTrigger::DEFAULT_BATCH_SIZE.into(),
    )?;
    let concurrency = int(
        &raw.concurrency,
        "concurrency",
        QueueTrigger::CONCURRENCY_RANGE,
        QueueTrigger::DEFAULT_CONCURRENCY.into(),
    )?;
    let max_attempts = int(
        &raw.max_attempts,
        "max_attempts",
        QueueTrigger::MAX_ATTEMPTS_RANGE,
        QueueTrigger::DEFAULT_MAX_ATTEMPTS.into(),
    )?;
    let retry_backoff_ms = int(
        &raw.retry_backoff_ms,
        "retry_backoff_ms",
        QueueTrigger::RETRY_BACKOFF_MS_RANGE,
        QueueTrigger::DEFAULT_RETRY_BACKOFF_MS,
    )?;
    let max_backoff_ms = int(
        &raw.max_backoff_ms,
        "max_backoff_ms",
        retry_backoff_ms..=QueueTrigger::MAX_DELAY_MS,
        QueueTrigger::DEFAULT_MAX_BACKOFF_MS.max(retry_backoff_ms),
    )?;
    let timeout = f.limits.timeout_ms;
    let visibility_timeout_ms = int(
        &raw.visibility_timeout_ms,
        "visibility_timeout_ms",
        (timeout + 1)..=QueueTrigger::MAX_DELAY_MS,
        (timeout + QueueTrigger::VISIBILITY_MARGIN_MS).min(QueueTrigger::MAX_DELAY_MS),
    )
    .map_err(|e| {
        ManifestError::at(
            src.file,
            src.text,
            raw.visibility_timeout_ms
                .as_ref()
                .map_or(span.clone(), Spanned::span),
            Some(field("visibility_timeout_ms")),
            format!(
                "{} — it must be longer than function `{function}`'s timeout_ms ({timeout}), or a message could be delivered again while it is still being handled",
                e.message
            ),
        )
    })?;
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(QueueTrigger {
        function,
        queue,
        batch_size: small(batch_size),
        concurrency: small(concurrency),
        max_attempts: small(max_attempts),
        dead_letter_queue,
        retry_backoff_ms,
        max_backoff_ms,
        visibility_timeout_ms,
    })
}

fn cron_trigger(
    raw: Spanned<RawCronTrigger>,
    index: usize,
    names: &Names<'_>,
    src: &Source<'_>,
) -> Result<CronTrigger, ManifestError> {
    let (span, raw) = (raw.span(), raw.into_inner());
    let at = format!("trigger.cron #{}", index + 1);
    let (function, _) = names.function(raw.function, span.clone(), &at, src)?;
    let Some(schedule) = raw.schedule else {
        return Err(src.error(
            span,
            format!("{at}: schedule"),
            "is required, e.g. schedule = \"0 3 * * *\" (every day at 03:00)",
        ));
    };
    let timezone = raw
        .timezone
        .unwrap_or_else(|| Spanned::new(span.clone(), "UTC".to_owned()));
    // The expression is checked alone first, so a bad zone is reported at the zone.
    Schedule::parse(schedule.get_ref(), "UTC")
        .map_err(|m| src.error(schedule.span(), format!("{at}: schedule"), m))?;
    Schedule::parse(schedule.get_ref(), timezone.get_ref())
        .map_err(|m| src.error(timezone.span(), format!("{at}: timezone"), m))?;
    let missed = match raw.missed {
        None => MissedTicks::default(),
        Some(value) => match value.get_ref().as_str() {
            "skip" => MissedTicks::Skip,
            "run-once" => MissedTicks::RunOnce,
            other => {
                return Err(src.error(
                    value.span(),
                    format!("{at}: missed"),
                    format!("must be \"skip\" or \"run-once\" (got \"{other}\")"),
                ));
            }
        },
    };
    Ok(CronTrigger {
        function,
        schedule: schedule.into_inner(),
        timezone: timezone.into_inner(),
        missed,
    })
}
