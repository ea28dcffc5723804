//! Turns the raw, spanned manifest into the typed [`App`], checking every rule and filling in
//! defaults.
//!
//! Validation stops at the first error: manifests are short and edited by hand, and one precise
//! message at the right line beats a cascade caused by the first mistake.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Range, RangeInclusive};

use serde_spanned::Spanned;

use crate::app::{App, Function, Limits};
use crate::error::{ManifestError, line_column};
use crate::outbound::OutboundHost;
use crate::route::Route;
use crate::schema::{Integer, RawApp, RawFunction, RawManifest, StringList};

/// Longest app or function name: names end up in DNS labels and URLs.
const MAX_NAME_LEN: usize = 63;
/// Budget for all env names plus values of one function, in bytes. Env is for configuration;
/// anything larger belongs in a file or a store.
const MAX_ENV_BYTES: usize = 4096;

/// The file being validated, for building positioned errors.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        field: String,
        message: impl Into<String>,
    ) -> ManifestError {
        ManifestError::at(self.file, self.text, span, Some(field), message)
    }

    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        line_column(self.text, span.start).0
    }
}

/// Checks `raw` against every manifest rule and builds the [`App`].
pub(crate) fn validate(raw: RawManifest, src: &Source<'_>) -> Result<App, ManifestError> {
    let Some(app) = raw.app else {
        return Err(src.error(
            0..0,
            "app".to_owned(),
            "missing [app] table; start the file with [app] and name = \"my-app\"",
        ));
    };
    let (app_span, app) = (app.span(), app.into_inner());
    let RawApp { name, description } = app;
    let Some(name) = name else {
        return Err(src.error(
            app_span,
            "app.name".to_owned(),
            "is required, e.g. name = \"shop\"",
        ));
    };
    check_name(&name).map_err(|m| src.error(name.span(), "app.name".to_owned(), m))?;

    let raw_functions = match raw.functions {
        Some(list) if !list.get_ref().is_empty() => list.into_inner(),
        other => {
            return Err(src.error(
                other.map_or(0..0, |list| list.span()),
                "function".to_owned(),
                "the app has no functions; add a [[function]] table with a name, component and routes",
            ));
        }
    };

    let mut functions = Vec::with_capacity(raw_functions.len());
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    let mut routes: HashMap<Route, (String, Range<usize>)> = HashMap::new();
    let mut unrouted = Vec::new();
    let mut queue_refs = Vec::new();
    for (index, raw_function) in raw_functions.into_iter().enumerate() {
        let function = validate_function(
            raw_function,
            index,
            src,
            &mut names,
            &mut routes,
            &mut unrouted,
            &mut queue_refs,
        )?;
        functions.push(function);
    }

    let (queues, triggers) =
        crate::triggers::validate(raw.queues, raw.triggers, &functions, queue_refs, src)?;
    let app = App {
        name: name.into_inner(),
        description: description.map(Spanned::into_inner),
        functions,
        queues,
        triggers,
    };
    if let Some((name, span)) = unrouted.into_iter().find(|(name, _)| !app.triggered(name)) {
        return Err(src.error(
            span,
            format!("function \"{name}\": routes"),
            format!(
                "function \"{name}\" has no routes and no trigger names it; add routes = [\"/{name}/...\"], a [[trigger.*]] for it, or a [function.async] table if it is only invoked asynchronously"
            ),
        ));
    }
    Ok(app)
}

fn validate_function(
    raw: Spanned<RawFunction>,
    index: usize,
    src: &Source<'_>,
    names: &mut HashMap<String, Range<usize>>,
    routes_in_app: &mut HashMap<Route, (String, Range<usize>)>,
    unrouted: &mut Vec<(String, Range<usize>)>,
    queue_refs: &mut Vec<(Spanned<String>, String)>,
) -> Result<Function, ManifestError> {
    let (span, mut raw) = (raw.span(), raw.into_inner());

    // Until the name is known to be good, errors name the function by position.
    let numbered = format!("function #{}", index + 1);
    let Some(name) = raw.name.take() else {
        return Err(src.error(
            span,
            format!("{numbered}: name"),
            "is required, e.g. name = \"api\"",
        ));
    };
    check_name(&name).map_err(|m| src.error(name.span(), format!("{numbered}: name"), m))?;
    let (name_span, name) = (name.span(), name.into_inner());
    let at = format!("function \"{name}\"");
    if let Some(first) = names.get(&name) {
        return Err(src.error(
            name_span,
            format!("{at}: name"),
            format!(
                "another function is already named \"{name}\" (line {}); function names must be unique",
                src.line(first)
            ),
        ));
    }
    names.insert(name.clone(), name_span);

    let Some(component) = raw.component.take() else {
        return Err(src.error(
            span,
            format!("{at}: component"),
            "is required: the path of the function's .wasm file, relative to nimbus.toml",
        ));
    };
    check_component(component.get_ref())
        .map_err(|m| src.error(component.span(), format!("{at}: component"), m))?;

    let build = match raw.build.take() {
        Some(build) if build.get_ref().trim().is_empty() => {
            return Err(src.error(
                build.span(),
                format!("{at}: build"),
                "must not be empty; remove the key if there is no build step",
            ));
        }
        other => other.map(Spanned::into_inner),
    };

    let routes = validate_routes(
        raw.routes.take(),
        span,
        &name,
        &at,
        src,
        routes_in_app,
        unrouted,
    )?;
    let limits = validate_limits(&raw, &at, src)?;
    let env = validate_env(raw.env.take(), &at, src)?;

    let mut allowed_outbound_hosts = Vec::new();
    for entry in raw
        .allowed_outbound_hosts
        .map(|l| l.into_inner().0)
        .unwrap_or_default()
    {
        let host = OutboundHost::parse(entry.get_ref())
            .map_err(|m| src.error(entry.span(), format!("{at}: allowed_outbound_hosts"), m))?;
        allowed_outbound_hosts.push(host);
    }

    let key_value_stores = validate_stores(raw.key_value_stores.take(), &at, src)?;
    let (config, secrets) =
        crate::config::validate_config(raw.config.take(), raw.secrets.take(), &at, src)?;
    let buckets = crate::config::validate_buckets(raw.buckets.take(), &at, src)?;
    let mut queues = Vec::new();
    for entry in raw
        .queues
        .take()
        .map(|l| l.into_inner().0)
        .unwrap_or_default()
    {
        if queues.contains(entry.get_ref()) {
            return Err(src.error(
                entry.span(),
                format!("{at}: queues"),
                format!("queue `{}` is listed twice", entry.get_ref()),
            ));
        }
        queues.push(entry.get_ref().clone());
        queue_refs.push((entry, format!("{at}: queues")));
    }
    let raw_async = raw.async_invocation.take();
    if raw_async.is_some() {
        // Invoked asynchronously: reachable without routes or triggers.
        unrouted.retain(|(n, _)| *n != name);
    }
    let async_invocation = validate_async(raw_async, &at, src, queue_refs)?;

    Ok(Function {
        name,
        component: component.into_inner(),
        build,
        routes,
        limits,
        env,
        allowed_outbound_hosts,
        key_value_stores,
        config,
        secrets,
        buckets,
        queues,
        async_invocation,
    })
}

/// `[function.async]`; its queue names are checked once the queues are known (`queue_refs`).
fn validate_async(
    raw: Option<Spanned<crate::schema::RawAsync>>,
    at: &str,
    src: &Source<'_>,
    queue_refs: &mut Vec<(Spanned<String>, String)>,
) -> Result<crate::app::AsyncConfig, ManifestError> {
    use crate::app::{AsyncConfig, QueueTrigger};
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Ok(AsyncConfig::default());
    };
    let max_attempts = ranged(
        raw.max_attempts.as_ref(),
        &format!("{at}: async.max_attempts"),
        QueueTrigger::MAX_ATTEMPTS_RANGE,
        QueueTrigger::DEFAULT_MAX_ATTEMPTS.into(),
        src,
    )?;
    let retry_backoff_ms = ranged(
        raw.retry_backoff_ms.as_ref(),
        &format!("{at}: async.retry_backoff_ms"),
        QueueTrigger::RETRY_BACKOFF_MS_RANGE,
        QueueTrigger::DEFAULT_RETRY_BACKOFF_MS,
        src,
    )?;
    let mut destination = |value: Option<Spanned<String>>, key: &str| {
        value.map(|v| {
            let name = v.get_ref().clone();
            queue_refs.push((v, format!("{at}: async.{key}")));
            name
        })
    };
    let on_success = destination(raw.on_success, "on_success");
    let on_failure = destination(raw.on_failure, "on_failure");
    Ok(AsyncConfig {
        max_attempts: u32::try_from(max_attempts).unwrap_or(QueueTrigger::DEFAULT_MAX_ATTEMPTS),
        retry_backoff_ms,
        on_success,
        on_failure,
    })
}

fn validate_routes(
    raw: Option<Spanned<StringList>>,
    function_span: Range<usize>,
    name: &str,
    at: &str,
    src: &Source<'_>,
    routes_in_app: &mut HashMap<Route, (String, Range<usize>)>,
    unrouted: &mut Vec<(String, Range<usize>)>,
) -> Result<Vec<Route>, ManifestError> {
    let field = format!("{at}: routes");
    let (span, entries) = match raw {
        Some(list) => (list.span(), list.into_inner().0),
        None => (function_span, Vec::new()),
    };
    // A function without routes must be named by a trigger; checked once triggers are known.
    if entries.is_empty() {
        unrouted.push((name.to_owned(), span));
    }
    let mut routes = Vec::with_capacity(entries.len());
    for entry in entries {
        let route =
            Route::parse(entry.get_ref()).map_err(|m| src.error(entry.span(), field.clone(), m))?;
        if let Some((owner, first)) = routes_in_app.get(&route) {
            let message = if owner == name {
                format!(
                    "route \"{route}\" is listed twice (first on line {})",
                    src.line(first)
                )
            } else {
                format!(
                    "route \"{route}\" is already used by function \"{owner}\" (line {}); each host and path may be routed to one function only",
                    src.line(first)
                )
            };
            return Err(src.error(entry.span(), field, message));
        }
        routes_in_app.insert(route.clone(), (name.to_owned(), entry.span()));
        routes.push(route);
    }
    Ok(routes)
}

fn validate_limits(raw: &RawFunction, at: &str, src: &Source<'_>) -> Result<Limits, ManifestError> {
    let defaults = Limits::default();
    let check =
        |value: &Option<Spanned<Integer>>, key: &str, range: RangeInclusive<u64>, default: u64| {
            ranged(value.as_ref(), &format!("{at}: {key}"), range, default, src)
        };
    let widen = |r: RangeInclusive<u32>| u64::from(*r.start())..=u64::from(*r.end());
    let memory_mb = check(
        &raw.memory_mb,
        "memory_mb",
        widen(Limits::MEMORY_MB_RANGE),
        defaults.memory_mb.into(),
    )?;
    let timeout_ms = check(
        &raw.timeout_ms,
        "timeout_ms",
        Limits::TIMEOUT_MS_RANGE,
        defaults.timeout_ms,
    )?;
    // The CPU budget defaults to the wall-clock limit and can never exceed it: a request that
    // has used `timeout_ms` of CPU has necessarily also used `timeout_ms` of wall-clock time.
    let cpu_time_ms = match &raw.cpu_time_ms {
        None => timeout_ms,
        Some(value) => match value.get_ref().0 {
            n if n >= 1 && n.unsigned_abs() <= timeout_ms => n.unsigned_abs(),
            n if n >= 1 => {
                let default = if raw.timeout_ms.is_none() {
                    ", the default"
                } else {
                    ""
                };
                return Err(src.error(
                    value.span(),
                    format!("{at}: cpu_time_ms"),
                    format!(
                        "must not exceed timeout_ms ({timeout_ms}{default}) (got {n}); the CPU budget cannot be more than the wall-clock limit"
                    ),
                ));
            }
            n => {
                return Err(src.error(
                    value.span(),
                    format!("{at}: cpu_time_ms"),
                    format!("must be between 1 and {timeout_ms} (got {n})"),
                ));
            }
        },
    };
    let max_concurrency = check(
        &raw.max_concurrency,
        "max_concurrency",
        widen(Limits::MAX_CONCURRENCY_RANGE),
        defaults.max_concurrency.into(),
    )?;
    let max_body_bytes = check(
        &raw.max_body_bytes,
        "max_body_bytes",
        Limits::MAX_BODY_BYTES_RANGE,
        defaults.max_body_bytes,
    )?;

    let min_instances = check(&raw.min_instances, "min_instances", 0..=max_concurrency, 0)?;
    let max_waiting = check(
        &raw.max_waiting,
        "max_waiting",
        widen(Limits::MAX_WAITING_RANGE),
        defaults.max_waiting.into(),
    )?;
    let max_wait_ms = check(
        &raw.max_wait_ms,
        "max_wait_ms",
        1..=timeout_ms,
        defaults.max_wait_ms.min(timeout_ms),
    )?;
    let max_response_bytes = check(
        &raw.max_response_bytes,
        "max_response_bytes",
        Limits::MAX_RESPONSE_BYTES_RANGE,
        defaults.max_response_bytes,
    )?;
    let max_outbound_requests = check(
        &raw.max_outbound_requests,
        "max_outbound_requests",
        widen(Limits::MAX_OUTBOUND_REQUESTS_RANGE),
        defaults.max_outbound_requests.into(),
    )?;
    let max_outbound_connections = check(
        &raw.max_outbound_connections,
        "max_outbound_connections",
        widen(Limits::MAX_OUTBOUND_CONNECTIONS_RANGE),
        defaults.max_outbound_connections.into(),
    )?;

    // The ranges above fit in u32 for the u32 fields, so these conversions cannot fail; the
    // fallback only keeps the code panic-free.
    Ok(Limits {
        memory_mb: u32::try_from(memory_mb).unwrap_or(defaults.memory_mb),
        timeout_ms,
        cpu_time_ms,
        max_concurrency: u32::try_from(max_concurrency).unwrap_or(defaults.max_concurrency),
        max_body_bytes,
        min_instances: u32::try_from(min_instances).unwrap_or(0),
        max_waiting: u32::try_from(max_waiting).unwrap_or(0),
        max_wait_ms,
        max_response_bytes,
        max_outbound_requests: u32::try_from(max_outbound_requests)
            .unwrap_or(defaults.max_outbound_requests),
        max_outbound_connections: u32::try_from(max_outbound_connections)
            .unwrap_or(defaults.max_outbound_connections),
    })
}

/// An optional integer in `range`, or `default` when absent.
pub(crate) fn ranged(
    value: Option<&Spanned<Integer>>,
    field: &str,
    range: RangeInclusive<u64>,
    default: u64,
    src: &Source<'_>,
) -> Result<u64, ManifestError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let n = value.get_ref().0;
    match u64::try_from(n) {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(src.error(
            value.span(),
            field.to_owned(),
            format!(
                "must be between {} and {} (got {n})",
                range.start(),
                range.end()
            ),
        )),
    }
}

fn validate_env(
    raw: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    at: &str,
    src: &Source<'_>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let Some(raw) = raw else {
        return Ok(BTreeMap::new());
    };
    let (span, raw) = (raw.span(), raw.into_inner());
    let mut env = BTreeMap::new();
    let mut total = 0;
    for (key, value) in raw {
        check_env_name(key.get_ref())
            .map_err(|m| src.error(key.span(), format!("{at}: env.{}", key.get_ref()), m))?;
        total += key.get_ref().len() + value.get_ref().len();
        env.insert(key.into_inner(), value.into_inner());
    }
    if total > MAX_ENV_BYTES {
        return Err(src.error(
            span,
            format!("{at}: env"),
            format!(
                "names and values add up to {total} bytes, more than the {MAX_ENV_BYTES}-byte limit; keep large configuration in a file or a store"
            ),
        ));
    }
    Ok(env)
}

/// `key_value_stores`: each a valid name, none twice.
fn validate_stores(
    raw: Option<Spanned<StringList>>,
    at: &str,
    src: &Source<'_>,
) -> Result<Vec<String>, ManifestError> {
    let names =
        crate::config::validate_names(raw, "key_value_stores", at, src, check_resource_name)?;
    Ok(names.into_iter().map(Spanned::into_inner).collect())
}

/// App and function names: DNS-label-like, because they appear in host names and URLs.
fn check_name(name: &Spanned<String>) -> Result<(), String> {
    check_resource_name(name.get_ref())
}

/// The rule for every name Nimbus hands out — apps, functions, key-value stores: 1–63
/// characters of `a-z`, `0-9` and `-`, starting with a letter and not ending with `-`. The
/// error says what is wrong and, where there is an obvious fix, suggests it.
pub fn check_resource_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "must be at most {MAX_NAME_LEN} characters (got {})",
            name.chars().count()
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some(format!("\"{name}\" must start with a lowercase letter"))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(format!(
            "\"{name}\" contains {}; use lowercase letters, digits and '-'",
            crate::host::describe_char(c)
        ))
    } else if name.ends_with('-') {
        Some(format!("\"{name}\" must not end with '-'"))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => match suggest_name(name) {
            Some(suggestion) => Err(format!("{problem} (try \"{suggestion}\")")),
            None => Err(problem),
        },
    }
}

/// A valid name close to `name`, if there is an obvious one (`My_App` → `my-app`).
fn suggest_name(name: &str) -> Option<String> {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped
        .trim_start_matches(|c: char| c == '-' || c.is_ascii_digit())
        .trim_end_matches('-');
    let ok = !trimmed.is_empty() && trimmed.len() <= MAX_NAME_LEN && !trimmed.contains("--");
    (ok && trimmed != name).then(|| trimmed.to_owned())
}

/// The component path is joined onto the manifest's directory, so it must stay inside it.
fn check_component(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err(
            "must not be empty; give the path of the .wasm file, e.g. \"dist/app.wasm\"".to_owned(),
        );
    }
    if path.contains('\\') {
        return Err(format!(
            "\"{path}\" contains '\\'; use '/' as the path separator (try \"{}\")",
            path.replace('\\', "/")
        ));
    }
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if path.starts_with('/') || drive {
        return Err(format!(
            "\"{path}\" is absolute; give a path relative to nimbus.toml"
        ));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(format!(
            "\"{path}\" contains '..'; the component must be inside the directory of nimbus.toml"
        ));
    }
    if path.contains('\0') {
        return Err("contains a NUL character".to_owned());
    }
    Ok(())
}

/// Environment variable names as POSIX shells accept them.
fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a valid variable name; use letters, digits and '_', not starting with a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<(), String> {
        check_name(&Spanned::new(0..0, s.to_owned()))
    }

    #[test]
    fn names() {
        for ok in ["a", "shop", "my-app", "a1", "a-1-b", &"a".repeat(63)] {
            assert_eq!(name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1app",
            "-app",
            "app-",
            "My_App",
            "my app",
            "ap\u{e9}",
            &"a".repeat(64),
        ] {
            assert!(name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            name("My_App"),
            Err("\"My_App\" must start with a lowercase letter (try \"my-app\")".to_owned())
        );
    }

    #[test]
    fn components() {
        for ok in [
            "app.wasm",
            "dist/app.wasm",
            "./dist/app.wasm",
            "target/wasm32-wasip2/release/a.wasm",
            "a..b.wasm",
        ] {
            assert_eq!(check_component(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "/abs/app.wasm",
            "C:/app.wasm",
            "c:app.wasm",
            "../app.wasm",
            "dist/../../app.wasm",
            "dist/..",
            "dist\\app.wasm",
        ] {
            assert!(check_component(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "GREETING", "api_key", "X1"] {
            assert_eq!(check_env_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1X", "A-B", "A B", "A.B", "\u{e9}"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }
}
