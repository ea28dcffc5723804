//! Converting toml's own errors (syntax, unknown key, wrong type) into [`ManifestError`]s.
//!
//! toml reports a byte span but not, publicly, which key it was deserialising. To name the field
//! the way validation errors do (`function "api": memory_mb`), the document is parsed a second
//! time into toml's spanned tree and the deepest key or value covering the error is looked up.
//! Parsing is recoverable, so even after a syntax error the keys before it can be found.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::error::ManifestError;

/// One step of a path into the document.
#[derive(Clone)]
enum Step {
    Key(String),
    /// An array element, with the `name` of the table it holds, if any.
    Index(usize, Option<String>),
}

/// Builds the [`ManifestError`] for an error reported by toml.
pub(crate) fn toml_error(err: &toml::de::Error, source: &str, file: &str) -> ManifestError {
    let message = with_hint(err.message().trim_end());
    let Some(span) = err.span() else {
        return ManifestError {
            file: file.to_owned(),
            line: None,
            column: None,
            field: None,
            message,
        };
    };
    let (tree, _) = DeTable::parse_recoverable(source);
    let path = locate(tree.get_ref(), source, &span);
    ManifestError::at(file, source, span, render(&path), message)
}

/// Adds advice to the toml messages that users most often hit.
fn with_hint(message: &str) -> String {
    if message.contains("invalid type: map, expected a sequence") {
        // `[function]` instead of `[[function]]`: the only array of tables in the schema.
        return format!("{message}; declare each function with [[function]] (double brackets)");
    }
    if message == "duplicate key" {
        return "is set twice in the same table; remove one".to_owned();
    }
    message.to_owned()
}

/// The path of the key an error at `span` is about.
fn locate(tree: &DeTable<'_>, source: &str, span: &Range<usize>) -> Vec<Step> {
    let offset = span.start;
    let mut path = Vec::new();
    if find_in_table(
        tree,
        &|s| s.contains(&offset) || s.start == offset,
        &mut path,
    ) {
        return path;
    }
    // Errors at the end of a value (an unterminated string) sit just past its span.
    if find_in_table(tree, &|s| s.start <= offset && offset <= s.end, &mut path) {
        return path;
    }
    // A key toml refused (a duplicate) is not in the tree: name the table whose header comes
    // before it, plus the key as written. Other errors outside any key (a broken header) get no
    // field rather than a guess.
    let text = source.get(span.clone()).unwrap_or_default().trim();
    let is_key = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !is_key {
        return Vec::new();
    }
    let mut best = None;
    last_header_before(tree, source, offset, &mut Vec::new(), &mut best);
    let mut path = best.map(|(_, path)| path).unwrap_or_default();
    path.push(Step::Key(text.to_owned()));
    path
}

/// Appends to `path` the deepest key or value in `table` whose span satisfies `covers`.
fn find_in_table(
    table: &DeTable<'_>,
    covers: &dyn Fn(&Range<usize>) -> bool,
    path: &mut Vec<Step>,
) -> bool {
    for (key, value) in table {
        path.push(Step::Key(key.get_ref().to_string()));
        // Children are searched even when the value's own span does not cover the offset,
        // because a `[table]` header's span covers only the header, not the keys below it.
        if find_in_value(value.get_ref(), covers, path)
            || covers(&key.span())
            || covers(&value.span())
        {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &DeValue<'_>,
    covers: &dyn Fn(&Range<usize>) -> bool,
    path: &mut Vec<Step>,
) -> bool {
    match value {
        DeValue::Table(table) => find_in_table(table, covers, path),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Step::Index(index, table_name(item.get_ref())));
                if find_in_value(item.get_ref(), covers, path) || covers(&item.span()) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// Finds the `[table]` or `[[array]]` header starting last before `offset`.
fn last_header_before(
    table: &DeTable<'_>,
    source: &str,
    offset: usize,
    path: &mut Vec<Step>,
    best: &mut Option<(usize, Vec<Step>)>,
) {
    for (key, value) in table {
        path.push(Step::Key(key.get_ref().to_string()));
        match value.get_ref() {
            DeValue::Table(inner) => {
                consider(value.span(), source, offset, path, best);
                last_header_before(inner, source, offset, path, best);
            }
            DeValue::Array(array) => {
                for (index, item) in array.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        path.push(Step::Index(index, table_name(item.get_ref())));
                        consider(item.span(), source, offset, path, best);
                        last_header_before(inner, source, offset, path, best);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Records `path` in `best` if `span` is a header starting later than the best so far.
fn consider(
    span: Range<usize>,
    source: &str,
    offset: usize,
    path: &[Step],
    best: &mut Option<(usize, Vec<Step>)>,
) {
    let is_header = source.get(span.start..).is_some_and(|s| s.starts_with('['));
    let later = best.as_ref().is_none_or(|(start, _)| span.start > *start);
    if is_header && span.start <= offset && later {
        *best = Some((span.start, path.to_vec()));
    }
}

/// The `name` of a table, used to call a `[[function]]` by its name.
fn table_name(value: &DeValue<'_>) -> Option<String> {
    value
        .as_table()
        .and_then(|table| table.get("name"))
        .and_then(|name| name.get_ref().as_str())
        .map(str::to_owned)
}

/// Renders a path the way validation names fields: `app.name`, `function "api": env.X`.
///
/// Only the function list is worth numbering: other arrays are lists of strings whose element
/// the line and column already point at.
fn render(path: &[Step]) -> Option<String> {
    let (head, rest) = match path {
        [Step::Key(key), Step::Index(index, name), rest @ ..] if key == "function" => {
            let head = match name {
                Some(name) => format!("function \"{name}\""),
                None => format!("function #{}", index + 1),
            };
            (Some(head), rest)
        }
        _ => (None, path),
    };
    let keys: Vec<&str> = rest
        .iter()
        .filter_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(..) => None,
        })
        .collect();
    let tail = keys.join(".");
    match (head, tail.is_empty()) {
        (Some(head), true) => Some(head),
        (Some(head), false) => Some(format!("{head}: {tail}")),
        (None, true) => None,
        (None, false) => Some(tail),
    }
}
