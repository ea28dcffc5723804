//! `[function.config]` and `secrets` (what a function reads through `wasi:config`), and
//! `buckets` (what it may open through `wasi:blobstore`).

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use crate::ManifestError;
use crate::schema::StringList;
use crate::validate::Source;

/// Longest config value, in bytes (secrets have their own limit in the secret store).
const MAX_CONFIG_VALUE: usize = 64 * 1024;

/// The rule for config and secret names: 1–64 characters of `a-z`, `0-9` and `_`, starting
/// with a letter — Spin's rule for variables, so names carry over.
pub fn check_config_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "\"{name}\" must be 1 to 64 characters (got {})",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("\"{name}\" must start with a lowercase letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "\"{name}\" contains {}; use lowercase letters, digits and '_'",
            crate::host::describe_char(c)
        ));
    }
    Ok(())
}

/// S3's rule for bucket names: 3–63 characters of lowercase letters, digits, `.` and `-`;
/// starting and ending with a letter or digit; no `..`; not an IPv4 address.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let why = if !(3..=63).contains(&name.len()) {
        "bucket names are 3 to 63 characters long"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        "use lowercase letters, digits, '.' and '-'"
    } else if !name.bytes().next().is_some_and(edge) || !name.bytes().last().is_some_and(edge) {
        "bucket names start and end with a letter or digit"
    } else if name.contains("..") {
        "bucket names have no two adjacent periods"
    } else if name.parse::<std::net::Ipv4Addr>().is_ok() {
        "bucket names are not IP addresses"
    } else {
        return Ok(());
    };
    Err(format!("\"{name}\": {why}"))
}

fn edge(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A list of names under `field`: each passes `check`, none appears twice.
pub(crate) fn validate_names(
    raw: Option<Spanned<StringList>>,
    field: &str,
    at: &str,
    src: &Source<'_>,
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<Spanned<String>>, ManifestError> {
    let mut names: Vec<Spanned<String>> = Vec::new();
    for entry in raw.map(|l| l.into_inner().0).unwrap_or_default() {
        let field = format!("{at}: {field}");
        check(entry.get_ref()).map_err(|m| src.error(entry.span(), field.clone(), m))?;
        if names.iter().any(|n| n.get_ref() == entry.get_ref()) {
            return Err(src.error(
                entry.span(),
                field,
                format!("\"{}\" is listed twice", entry.get_ref()),
            ));
        }
        names.push(entry);
    }
    Ok(names)
}

/// `buckets`: S3 bucket names, none twice.
pub(crate) fn validate_buckets(
    raw: Option<Spanned<StringList>>,
    at: &str,
    src: &Source<'_>,
) -> Result<Vec<String>, ManifestError> {
    let names = validate_names(raw, "buckets", at, src, check_bucket_name)?;
    Ok(names.into_iter().map(Spanned::into_inner).collect())
}

pub(crate) type RawConfig = Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>;

/// Validates the config table and the secrets list of one function.
pub(crate) fn validate_config(
    config: RawConfig,
    secrets: Option<Spanned<StringList>>,
    at: &str,
    src: &Source<'_>,
) -> Result<(BTreeMap<String, String>, Vec<String>), ManifestError> {
    let mut values = BTreeMap::new();
    for (key, value) in config.map(Spanned::into_inner).unwrap_or_default() {
        let field = format!("{at}: config.{}", key.get_ref());
        check_config_name(key.get_ref()).map_err(|m| src.error(key.span(), field.clone(), m))?;
        if value.get_ref().len() > MAX_CONFIG_VALUE {
            return Err(src.error(
                value.span(),
                field,
                format!(
                    "values are at most {MAX_CONFIG_VALUE} bytes (got {})",
                    value.get_ref().len()
                ),
            ));
        }
        values.insert(key.into_inner(), value.into_inner());
    }
    let mut names = Vec::new();
    for entry in validate_names(secrets, "secrets", at, src, check_config_name)? {
        if values.contains_key(entry.get_ref()) {
            return Err(src.error(
                entry.span(),
                format!("{at}: secrets"),
                format!(
                    "\"{}\" is also a key of [function.config]; a name is either config or a secret",
                    entry.get_ref()
                ),
            ));
        }
        names.push(entry.into_inner());
    }
    Ok((values, names))
}
