//! `[[trigger.object]]` and `[[trigger.kv]]`: changes in a bucket or a key-value store.

use serde_spanned::Spanned;

use crate::app::{ChangeKind, ChangeTrigger, QueueTrigger};
use crate::error::ManifestError;
use crate::schema::RawChangeTrigger;
use crate::triggers::Names;
use crate::validate::{Source, check_resource_name, ranged};

/// What a change trigger watches.
#[derive(Clone, Copy)]
pub(crate) enum Watched {
    Bucket,
    Store,
}

impl Watched {
    fn table(self) -> &'static str {
        match self {
            Watched::Bucket => "trigger.object",
            Watched::Store => "trigger.kv",
        }
    }

    /// The manifest spelling of a write.
    fn written(self) -> &'static str {
        match self {
            Watched::Bucket => "created",
            Watched::Store => "set",
        }
    }

    /// `(the key naming what is watched, the other one)`.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Watched::Bucket => ("bucket", "store"),
            Watched::Store => ("store", "bucket"),
        }
    }
}

pub(crate) fn change_trigger(
    raw: Spanned<RawChangeTrigger>,
    index: usize,
    watched: Watched,
    names: &Names<'_>,
    src: &Source<'_>,
) -> Result<ChangeTrigger, ManifestError> {
    let (span, raw) = (raw.span(), raw.into_inner());
    let at = format!("{} #{}", watched.table(), index + 1);
    let field = |key: &str| format!("{at}: {key}");
    let (function, _) = names.function(raw.function, span.clone(), &at, src)?;
    let (wanted_key, other_key) = watched.keys();
    let (wanted, unwanted) = match watched {
        Watched::Bucket => (raw.bucket, raw.store),
        Watched::Store => (raw.store, raw.bucket),
    };
    if let Some(other) = unwanted {
        return Err(src.error(
            other.span(),
            field(other_key),
            format!(
                "a [[{}]] watches a {wanted_key}, not a {other_key}",
                watched.table()
            ),
        ));
    }
    let Some(source) = wanted else {
        return Err(src.error(
            span,
            field(wanted_key),
            format!("is required: the {wanted_key} whose changes invoke the function"),
        ));
    };
    let check = match watched {
        Watched::Bucket => crate::config::check_bucket_name(source.get_ref()),
        Watched::Store => check_resource_name(source.get_ref()),
    };
    check.map_err(|m| src.error(source.span(), field(wanted_key), m))?;
    let suffix = match (watched, raw.suffix) {
        (_, None) => String::new(),
        (Watched::Bucket, Some(s)) => s.into_inner(),
        (Watched::Store, Some(s)) => {
            return Err(src.error(
                s.span(),
                field("suffix"),
                "only [[trigger.object]] filters by suffix; use prefix",
            ));
        }
    };
    let events = match raw.events {
        None => vec![ChangeKind::Written, ChangeKind::Deleted],
        Some(list) => events(list, watched, &field("events"), src)?,
    };
    let dead_letter_queue = match raw.dead_letter_queue {
        None => None,
        Some(dlq) => Some(names.queue(&dlq, field("dead_letter_queue"), src)?),
    };
    let concurrency = ranged(
        raw.concurrency.as_ref(),
        &field("concurrency"),
        QueueTrigger::CONCURRENCY_RANGE,
        QueueTrigger::DEFAULT_CONCURRENCY.into(),
        src,
    )?;
    let max_attempts = ranged(
        raw.max_attempts.as_ref(),
        &field("max_attempts"),
        QueueTrigger::MAX_ATTEMPTS_RANGE,
        QueueTrigger::DEFAULT_MAX_ATTEMPTS.into(),
        src,
    )?;
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(ChangeTrigger {
        function,
        source: source.into_inner(),
        events,
        prefix: raw.prefix.map(Spanned::into_inner).unwrap_or_default(),
        suffix,
        concurrency: small(concurrency),
        max_attempts: small(max_attempts),
        dead_letter_queue,
    })
}

fn events(
    list: Spanned<crate::schema::StringList>,
    watched: Watched,
    field: &str,
    src: &Source<'_>,
) -> Result<Vec<ChangeKind>, ManifestError> {
    let (span, list) = (list.span(), list.into_inner().0);
    let mut events = Vec::new();
    for entry in list {
        let kind = match entry.get_ref().as_str() {
            "deleted" => ChangeKind::Deleted,
            w if w == watched.written() => ChangeKind::Written,
            other => {
                return Err(src.error(
                    entry.span(),
                    field.to_owned(),
                    format!(
                        "unknown event \"{other}\"; use \"{}\" and/or \"deleted\"",
                        watched.written()
                    ),
                ));
            }
        };
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    if events.is_empty() {
        return Err(src.error(
            span,
            field.to_owned(),
            format!(
                "must name at least one event: \"{}\" and/or \"deleted\"",
                watched.written()
            ),
        ));
    }
    Ok(events)
}
