//! The error returned for a manifest that cannot be used.
//!
//! There is one error type, not an enum: every failure — TOML syntax, unknown field, wrong
//! type, failed validation — is reported the same way, as a position plus a sentence, because
//! that is all a user editing `nimbus.toml` needs and all a caller does with it is show it.

use std::fmt;
use std::ops::Range;

/// A manifest error, positioned at the offending value.
///
/// Displays as `nimbus.toml:12:5: function "api": memory_mb: must be between 1 and 4096 (got 0)`,
/// or `nimbus.toml: message` when there is no position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file name given to [`crate::parse`], used only in messages.
    pub file: String,
    /// 1-based line of the offending text.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text.
    pub column: Option<usize>,
    /// Where in the manifest the problem is, as shown to the user: `app.name`,
    /// `function "api": memory_mb`, `function #2: name`.
    pub field: Option<String>,
    /// What is wrong, and where possible what to do about it.
    pub message: String,
}

impl ManifestError {
    /// An error at byte offset `span.start` of `source`.
    pub(crate) fn at(
        file: &str,
        source: &str,
        span: Range<usize>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source, span.start);
        ManifestError {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// 1-based line and character column of byte `offset` in `source`.
///
/// Offsets past the end (toml reports end-of-input errors there) clamp to the end; an offset
/// inside a multi-byte character counts as that character.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 4), (1, 5));
        assert_eq!(line_column(src, 6), (2, 1));
        // 'é' is two bytes; the '=' after it is still column 4.
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, 8), (2, 2));
        assert_eq!(line_column(src, 999), (3, 1));
    }

    #[test]
    fn display_with_and_without_position() {
        let err = ManifestError {
            file: "nimbus.toml".into(),
            line: Some(12),
            column: Some(5),
            field: Some("function \"api\": memory_mb".into()),
            message: "must be between 1 and 4096 (got 0)".into(),
        };
        assert_eq!(
            err.to_string(),
            "nimbus.toml:12:5: function \"api\": memory_mb: must be between 1 and 4096 (got 0)"
        );
        let err = ManifestError {
            file: "nimbus.toml".into(),
            line: None,
            column: None,
            field: None,
            message: "is empty".into(),
        };
        assert_eq!(err.to_string(), "nimbus.toml: is empty");
    }
}
