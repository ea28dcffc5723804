//! User text in S3's XML responses.
//!
//! Object keys may hold any UTF-8, but XML 1.0 cannot carry most control characters at all
//! (not even as character references), and parsers turn a carriage return into a line feed.
//! s3s writes strings with only `<>&'"` escaped, so a key with `\x01` in a listing made the
//! whole response unparseable — every listing covering it failed in boto3 and the aws CLI.
//! So:
//! - listings honour `encoding-type=url` (boto3 and the aws CLI always ask for it), which
//!   percent-encodes every key, prefix and delimiter they return;
//! - without it, a listing that would have to carry such text is refused with
//!   `InvalidArgument`, naming the text escaped;
//! - other responses that echo a key (multipart uploads, DeleteObjects) leave it out when XML
//!   cannot carry it, and error messages show it escaped.

use std::borrow::Cow;

use s3s::dto::EncodingType;
use s3s::{S3Error, S3ErrorCode, S3Result};

/// Whether `text` can appear in an XML 1.0 document as itself.
pub fn representable(text: &str) -> bool {
    text.chars().all(xml_char)
}

/// XML 1.0's `Char`, less `\r` (a parser reads it back as `\n`).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` for a message: the characters XML cannot carry written as `\u{..}`.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if representable(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if xml_char(c) {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect(),
    )
}

/// A key echoed back outside a listing: left out if XML cannot carry it.
pub fn echo_key(key: String) -> Option<String> {
    representable(&key).then_some(key)
}

/// Percent-encodes everything but RFC 3986's unreserved characters and `/`, as S3 does for
/// `encoding-type=url` (a `+` must be encoded: botocore decodes with `unquote_plus`).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How a listing writes the keys and prefixes it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// As they are (refused if XML cannot carry them).
    Plain,
    /// Percent-encoded (`encoding-type=url`).
    Url,
}

impl KeyEncoding {
    /// The encoding a listing request asked for; S3 knows only `url`.
    pub fn requested(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Self::Plain),
            Some(EncodingType::URL) => Ok(Self::Url),
            Some(other) => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!(
                    "Invalid Encoding Method specified in Request: {}",
                    escaped(other)
                ),
            )),
        }
    }

    /// What the response says it used.
    pub fn echo(self) -> Option<EncodingType> {
        match self {
            Self::Plain => None,
            Self::Url => Some(EncodingType::from_static(EncodingType::URL)),
        }
    }

    /// `text` (a key, prefix, delimiter or marker; `what` names it) as the listing writes it.
    pub fn text(self, what: &str, text: String) -> S3Result<String> {
        match self {
            Self::Url => Ok(url_encode(&text)),
            Self::Plain if representable(&text) => Ok(text),
            Self::Plain => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!(
                    "the {what} \"{}\" holds characters an XML 1.0 response cannot carry; \
                     list with encoding-type=url",
                    escaped(&text)
                ),
            )),
        }
    }

    /// [`Self::text`] of an optional field.
    pub fn opt(self, what: &str, text: Option<String>) -> S3Result<Option<String>> {
        text.map(|t| self.text(what, t)).transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn control_characters_and_carriage_returns_are_not_representable() {
        assert!(representable("photos/2026 12/été\tx\ny.jpg 🌧"));
        for bad in ["a\u{1}b", "a\rb", "\u{0}", "\u{FFFE}", "\u{1F}"] {
            assert!(!representable(bad), "{bad:?}");
        }
        assert_eq!(escaped("a\u{1}b"), "a\\u{1}b");
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(echo_key("a\u{1}".into()), None);
    }

    #[test]
    fn url_encoding_keeps_slashes_and_encodes_plus_and_percent() {
        assert_eq!(
            url_encode("dir/a b+c%d\u{1}é"),
            "dir/a%20b%2Bc%25d%01%C3%A9"
        );
    }

    #[test]
    fn listings_encode_on_request_and_refuse_what_plain_xml_cannot_carry() {
        let url = KeyEncoding::requested(Some(&EncodingType::from_static("url"))).unwrap();
        assert_eq!(url.text("key", "a\u{1}".into()).unwrap(), "a%01");
        assert_eq!(url.echo().unwrap().as_str(), "url");
        let plain = KeyEncoding::requested(None).unwrap();
        assert_eq!(plain.text("key", "ok".into()).unwrap(), "ok");
        let err = plain.text("key", "a\u{1}".into()).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidArgument");
        assert!(representable(err.message().unwrap()));
        let err = KeyEncoding::requested(Some(&EncodingType::from_static("base64"))).unwrap_err();
        assert_eq!(err.code().as_str(), "InvalidArgument");
    }
}
