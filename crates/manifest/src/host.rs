//! Host-name syntax shared by routes and outbound hosts.
//!
//! Both places need the same answer to "is this a host name we can compare reliably?", so the
//! rule lives once here. Names are compared lower-cased, so callers normalise before storing.

use std::net::Ipv4Addr;

/// Longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Checks that `name` (already lower-cased) is a DNS name or an IPv4 literal.
///
/// Underscores are accepted inside labels: they are not valid in RFC 1123 host names, but
/// container service names (`my_db` in Docker Compose) use them and resolve fine, and being
/// stricter than the resolver would only get in users' way.
pub(crate) fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("host is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("host is longer than {MAX_NAME_LEN} characters"));
    }
    if name.ends_with('.') {
        return Err(format!("host '{name}' must not end with '.'"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("host '{name}' has an empty label ('..')"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "host '{name}' has a label longer than {MAX_LABEL_LEN} characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "host '{name}' contains {}; use letters, digits, '-' and '.'",
                describe_char(c)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host '{name}' has a label starting or ending with '-'"
            ));
        }
    }
    // A name whose last label is all digits can only be meant as an IPv4 address; reject
    // near-misses like `999.1.1.1` or `10.0.0` instead of treating them as names.
    let last = name.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) && name.parse::<Ipv4Addr>().is_err() {
        return Err(format!("host '{name}' is not a valid IPv4 address"));
    }
    Ok(())
}

/// Names a character for an error message, making invisible ones visible.
pub(crate) fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_whitespace() => format!("whitespace ({})", c.escape_default()),
        c if c.is_control() => format!("a control character ({})", c.escape_default()),
        c if !c.is_ascii() => format!("a non-ASCII character ('{c}')"),
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_ipv4() {
        for ok in [
            "example.com",
            "a.b.example.com",
            "localhost",
            "my_db",
            "x-1.example",
            "127.0.0.1",
            "10.0.0.255",
            "3com.net",
        ] {
            assert_eq!(validate_dns_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "example.com.",
            "a..b",
            ".a",
            "-a.com",
            "a-.com",
            "a b",
            "ex\u{e4}mple.com",
            "a/b",
            "a:80",
            "999.1.1.1",
            "10.0.0",
            "1.2.3.4.5",
        ] {
            assert!(validate_dns_name(bad).is_err(), "{bad:?}");
        }
        let long_label = "a".repeat(64);
        assert!(validate_dns_name(&long_label).is_err());
        let long_name = ["abcdefghi"; 30].join(".");
        assert!(validate_dns_name(&long_name).is_err());
    }
}
