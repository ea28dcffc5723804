//! `allowed_outbound_hosts`: which network destinations a function may call.
//!
//! The syntax follows Spin: `scheme://host[:port]`, where each part may be a wildcard. A pattern
//! is deliberately only scheme + host + port — never a path — because the engine enforces it on
//! the connection, before any request path is known.
//!
//! Everything is normalised at parse time (lower-case scheme and host, canonical IP literals,
//! default ports filled in) so that [`OutboundHost::allows`] is a plain comparison.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::host::{describe_char, validate_dns_name};

/// One allowed outbound destination pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundHost {
    /// `"http"` or `"https"`; `None` allows either (written `*`).
    pub scheme: Option<String>,
    /// Which hosts match.
    pub host: HostPattern,
    /// Which ports match.
    pub port: PortPattern,
}

/// The host part of an [`OutboundHost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPattern {
    /// Any host (`*`).
    Any,
    /// One lower-cased DNS name, IPv4 literal, or bracketed canonical IPv6 literal (`[::1]`).
    Exact(String),
    /// Any host strictly below a domain: `*.example.com` is stored as `Suffix(".example.com")`
    /// and matches `a.example.com` and `a.b.example.com`, but not `example.com`.
    Suffix(String),
}

/// The port part of an [`OutboundHost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortPattern {
    /// Any port (`*`).
    Any,
    /// Exactly this port.
    Exact(u16),
}

impl OutboundHost {
    /// Parses one `allowed_outbound_hosts` entry, e.g. `https://api.example.com`,
    /// `http://*.internal:8080`, `*://[::1]:*`.
    pub fn parse(s: &str) -> Result<OutboundHost, String> {
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(format!(
                "outbound host \"{s}\" contains {}",
                describe_char(c)
            ));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!(
                "outbound host \"{s}\" has no scheme; write it as \"https://{s}\" (or http://, or *:// for both)"
            ));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Some("http".to_owned()),
            "https" => Some("https".to_owned()),
            "*" => None,
            other => {
                return Err(format!(
                    "outbound host \"{s}\" has scheme '{other}'; only http, https and * are supported"
                ));
            }
        };
        if let Some(i) = rest.find(['/', '?', '#']) {
            return Err(format!(
                "outbound host \"{s}\" must not include a path ('{}'); access is granted per scheme, host and port — write \"{}://{}\"",
                &rest[i..],
                scheme.as_deref().unwrap_or("*"),
                &rest[..i],
            ));
        }
        if rest.contains('@') {
            return Err(format!(
                "outbound host \"{s}\" must not include a user name ('@')"
            ));
        }
        let (host, port) =
            split_host_port(rest).map_err(|e| format!("outbound host \"{s}\": {e}"))?;
        let host = parse_host_pattern(host).map_err(|e| format!("outbound host \"{s}\": {e}"))?;
        let port = match (port, scheme.as_deref()) {
            (Some("*"), _) => PortPattern::Any,
            (Some(port), _) => PortPattern::Exact(
                parse_port(port).map_err(|e| format!("outbound host \"{s}\": {e}"))?,
            ),
            (None, Some(scheme)) => PortPattern::Exact(default_port(scheme)),
            (None, None) => {
                return Err(format!(
                    "outbound host \"{s}\" needs a port: with scheme '*' there is no default, so write \"{s}:443\" for one port or \"{s}:*\" for any"
                ));
            }
        };
        Ok(OutboundHost { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    ///
    /// `scheme` is `"http"` or `"https"`; `port` is the effective port (the caller fills in 80 or
    /// 443 when the URL has none). `host` may be a name, an IPv4 literal, or an IPv6 literal with
    /// or without brackets; it is compared case-insensitively and a trailing `.` is ignored.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(allowed) = &self.scheme
            && !allowed.eq_ignore_ascii_case(scheme)
        {
            return false;
        }
        if let PortPattern::Exact(allowed) = self.port
            && allowed != port
        {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(allowed) => normalise_request_host(host) == *allowed,
            HostPattern::Suffix(suffix) => {
                let host = normalise_request_host(host);
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// The port a URL without an explicit port uses.
fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

/// Splits `host[:port]`, where an IPv6 host must be bracketed.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let Some(end) = rest.find(']') else {
            return Err("IPv6 address is missing its closing ']'".to_owned());
        };
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected '{after}' after the IPv6 address")),
            },
        };
    }
    match rest.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err("IPv6 addresses must be written in brackets, e.g. \"http://[::1]:8080\"".to_owned())
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((rest, None)),
    }
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, String> {
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err("host is empty".to_owned());
    }
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err("only a single leading '*.' wildcard is allowed in a host".to_owned());
        }
        validate_dns_name(domain)?;
        if domain.parse::<Ipv4Addr>().is_ok() {
            return Err("a '*.' wildcard needs a domain name, not an IP address".to_owned());
        }
        return Ok(HostPattern::Suffix(format!(".{domain}")));
    }
    if host.contains('*') {
        return Err(format!(
            "host '{host}' has '*' in the wrong place; use '*' for any host or '*.example.com' for subdomains"
        ));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("'{host}' is not a valid IPv6 address"))?;
        return Ok(HostPattern::Exact(format!("[{ip}]")));
    }
    validate_dns_name(&host)?;
    Ok(HostPattern::Exact(host))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{port}' is not a number or '*'"));
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("port must be between 1 and 65535 (got {port})")),
    }
}

/// Brings a request's host into the normalised form patterns are stored in.
fn normalise_request_host(host: &str) -> String {
    let host = host.strip_suffix('.').unwrap_or(host);
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<Ipv6Addr>() {
        return format!("[{ip}]");
    }
    host.to_ascii_lowercase()
}

impl fmt::Display for OutboundHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_deref().unwrap_or("*");
        write!(f, "{scheme}://")?;
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Exact(host) => f.write_str(host)?,
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}")?,
        }
        match (self.port, self.scheme.as_deref()) {
            // Leave out the port the parser would fill in anyway, so that the common
            // `https://host` form displays as written.
            (PortPattern::Exact(port), Some(scheme)) if port == default_port(scheme) => Ok(()),
            (PortPattern::Exact(port), _) => write!(f, ":{port}"),
            (PortPattern::Any, _) => f.write_str(":*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> OutboundHost {
        OutboundHost::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn host(scheme: Option<&str>, host: HostPattern, port: PortPattern) -> OutboundHost {
        OutboundHost {
            scheme: scheme.map(str::to_owned),
            host,
            port,
        }
    }

    #[test]
    fn parses_and_normalises() {
        use HostPattern::{Any, Exact, Suffix};
        let cases = [
            (
                "https://example.com",
                host(
                    Some("https"),
                    Exact("example.com".into()),
                    PortPattern::Exact(443),
                ),
            ),
            (
                "http://example.com",
                host(
                    Some("http"),
                    Exact("example.com".into()),
                    PortPattern::Exact(80),
                ),
            ),
            (
                "HTTPS://Payments.Example.COM",
                host(
                    Some("https"),
                    Exact("payments.example.com".into()),
                    PortPattern::Exact(443),
                ),
            ),
            (
                "http://localhost:3000",
                host(
                    Some("http"),
                    Exact("localhost".into()),
                    PortPattern::Exact(3000),
                ),
            ),
            (
                "https://example.com:*",
                host(Some("https"), Exact("example.com".into()), PortPattern::Any),
            ),
            (
                "*://example.com:8080",
                host(None, Exact("example.com".into()), PortPattern::Exact(8080)),
            ),
            ("*://*:*", host(None, Any, PortPattern::Any)),
            (
                "https://*",
                host(Some("https"), Any, PortPattern::Exact(443)),
            ),
            (
                "https://*.example.com",
                host(
                    Some("https"),
                    Suffix(".example.com".into()),
                    PortPattern::Exact(443),
                ),
            ),
            (
                "http://127.0.0.1:8080",
                host(
                    Some("http"),
                    Exact("127.0.0.1".into()),
                    PortPattern::Exact(8080),
                ),
            ),
            (
                "http://[::1]:8080",
                host(
                    Some("http"),
                    Exact("[::1]".into()),
                    PortPattern::Exact(8080),
                ),
            ),
            (
                "https://[2001:DB8:0:0::1]",
                host(
                    Some("https"),
                    Exact("[2001:db8::1]".into()),
                    PortPattern::Exact(443),
                ),
            ),
            (
                "http://my_db:5432",
                host(
                    Some("http"),
                    Exact("my_db".into()),
                    PortPattern::Exact(5432),
                ),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_entries() {
        let cases = [
            ("example.com", "has no scheme"),
            ("ftp://example.com", "scheme 'ftp'"),
            ("redis://cache:6379", "scheme 'redis'"),
            (
                "https://example.com/api",
                "must not include a path ('/api')",
            ),
            ("https://example.com/", "must not include a path ('/')"),
            (
                "https://example.com:8443/v1?x=1",
                "write \"https://example.com:8443\"",
            ),
            ("https://example.com?x", "must not include a path"),
            ("https://user@example.com", "user name"),
            ("*://example.com", "needs a port"),
            ("*://*", "needs a port"),
            ("https://", "host is empty"),
            ("https://:443", "host is empty"),
            ("https://example.com:0", "between 1 and 65535"),
            ("https://example.com:65536", "between 1 and 65535"),
            ("https://example.com:", "not a number"),
            ("https://example.com:http", "not a number"),
            ("https://a.*.com", "wrong place"),
            ("https://*example.com", "wrong place"),
            ("https://*.*.com", "single leading"),
            ("https://*.10.0.0.1", "IP address"),
            ("http://::1", "in brackets"),
            ("http://[::1", "closing ']'"),
            ("http://[::1]x", "after the IPv6 address"),
            ("http://[zz::1]", "not a valid IPv6"),
            ("http://999.0.0.1", "not a valid IPv4"),
            ("https://exa mple.com", "a space"),
            ("https://b\u{fc}cher.de", "non-ASCII"),
            ("https://a..b", "empty label"),
        ];
        for (input, want) in cases {
            let err = OutboundHost::parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn exact_host_and_default_ports() {
        let h = parse("https://payments.example.com");
        assert!(h.allows("https", "payments.example.com", 443));
        assert!(h.allows("HTTPS", "Payments.Example.COM", 443));
        assert!(h.allows("https", "payments.example.com.", 443));
        assert!(!h.allows("http", "payments.example.com", 443));
        assert!(!h.allows("https", "payments.example.com", 8443));
        assert!(!h.allows("https", "example.com", 443));
        assert!(!h.allows("https", "evil-payments.example.com", 443));
        assert!(!h.allows("https", "payments.example.com.evil.net", 443));

        let h = parse("http://example.com");
        assert!(h.allows("http", "example.com", 80));
        assert!(!h.allows("http", "example.com", 443));
    }

    #[test]
    fn suffix_needs_a_subdomain() {
        let h = parse("https://*.example.com");
        assert!(h.allows("https", "a.example.com", 443));
        assert!(h.allows("https", "a.b.example.com", 443));
        assert!(h.allows("https", "A.EXAMPLE.com", 443));
        assert!(!h.allows("https", "example.com", 443));
        assert!(!h.allows("https", "badexample.com", 443));
        assert!(!h.allows("https", "a.example.com.evil", 443));
        assert!(!h.allows("http", "a.example.com", 443));
    }

    #[test]
    fn wildcards() {
        let all = parse("*://*:*");
        assert!(all.allows("http", "anything", 1));
        assert!(all.allows("https", "[::1]", 65535));

        let any_port = parse("http://localhost:*");
        assert!(any_port.allows("http", "localhost", 3000));
        assert!(!any_port.allows("https", "localhost", 3000));

        let any_scheme = parse("*://api.internal:8080");
        assert!(any_scheme.allows("http", "api.internal", 8080));
        assert!(any_scheme.allows("https", "api.internal", 8080));
        assert!(!any_scheme.allows("https", "api.internal", 443));
    }

    #[test]
    fn ip_literals() {
        let v6 = parse("http://[::1]:8080");
        assert!(v6.allows("http", "[::1]", 8080));
        assert!(v6.allows("http", "::1", 8080));
        assert!(v6.allows("http", "[0:0:0:0:0:0:0:1]", 8080));
        assert!(!v6.allows("http", "[::2]", 8080));
        assert!(!v6.allows("http", "127.0.0.1", 8080));

        let v4 = parse("http://127.0.0.1:8080");
        assert!(v4.allows("http", "127.0.0.1", 8080));
        assert!(!v4.allows("http", "127.0.0.2", 8080));
        assert!(!v4.allows("http", "localhost", 8080));
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            ("https://example.com", "https://example.com"),
            ("HTTP://Example.com:80", "http://example.com"),
            ("https://example.com:8443", "https://example.com:8443"),
            ("http://example.com:443", "http://example.com:443"),
            ("*://*:*", "*://*:*"),
            ("*://example.com:443", "*://example.com:443"),
            ("https://*.example.com:*", "https://*.example.com:*"),
            ("http://[0::1]:8080", "http://[::1]:8080"),
        ];
        for (input, shown) in cases {
            let parsed = parse(input);
            assert_eq!(parsed.to_string(), shown, "{input}");
            assert_eq!(parse(shown), parsed, "{input}");
        }
    }
}
