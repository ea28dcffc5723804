//! HTTP route syntax and matching.
//!
//! A route is written the Spin way: a path (`/hello`, `/api/...`) or `host/path`
//! (`api.example.com/users/...`). The host is everything before the first `/`; a trailing `/...`
//! turns the path into a prefix wildcard that matches whole segments only, so `/api/...` matches
//! `/api` and `/api/x` but never `/apix`.
//!
//! Parsing is strict on purpose: anything the matcher would treat surprisingly (`//`, `.`
//! segments, `*`, `:param`, query strings) is rejected with a message rather than silently
//! turned into an exact route that never matches. Relaxing a rule later is compatible; tightening
//! one is not.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::{describe_char, validate_dns_name};

/// The wildcard suffix that turns a path into a prefix match.
const WILDCARD: &str = "/...";

/// One HTTP route of a function: an optional host and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Lower-cased host name the route is bound to; `None` matches any host.
    pub host: Option<String>,
    /// Which request paths the route matches.
    pub pattern: RoutePattern,
}

/// Which request paths a route matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutePattern {
    /// Exactly this path; a trailing slash is significant and `/` is the root only.
    Exact(String),
    /// This path and everything below it, segment-wise. The stored prefix has no trailing slash;
    /// `Prefix("")` (written `/...`) matches every path.
    Prefix(String),
}

impl Route {
    /// Parses a route as written in `nimbus.toml` (`/path`, `/path/...`, `host/path`).
    ///
    /// The host is lower-cased so that `Display` gives the normalised manifest form.
    pub fn parse(s: &str) -> Result<Route, String> {
        if s.is_empty() {
            return Err("route is empty; write a path such as \"/hello\" or \"/...\"".to_owned());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(format!("route contains {}", describe_char(c)));
        }
        let (host, path) = match s.find('/') {
            Some(0) => (None, s),
            Some(i) => (Some(parse_host(&s[..i])?), &s[i..]),
            None => {
                return Err(format!(
                    "route must start with '/' or be 'host/path' (got \"{s}\"); did you mean \"/{s}\"?"
                ));
            }
        };
        let pattern = RoutePattern::parse(path)?;
        Ok(Route { host, pattern })
    }
}

/// Validates and lower-cases the host part of a route.
fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        return Err(format!(
            "route host '{host}' is an IPv6 literal; routes take host names, or a path alone to match any host"
        ));
    }
    if host.contains(':') {
        return Err(format!(
            "route host '{host}' has a port; ports are not part of routing, remove ':{}'",
            host.rsplit(':').next().unwrap_or_default()
        ));
    }
    if host.contains('*') {
        return Err(format!(
            "route host '{host}' must be a plain host name; wildcards are not supported"
        ));
    }
    let host = host.to_ascii_lowercase();
    validate_dns_name(&host).map_err(|e| format!("route {e}"))?;
    Ok(host)
}

impl RoutePattern {
    /// Parses the path part of a route (starting with `/`).
    pub fn parse(path: &str) -> Result<RoutePattern, String> {
        if !path.starts_with('/') {
            return Err(format!("route path must start with '/' (got \"{path}\")"));
        }
        if let Some(c) = path
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
        {
            return Err(format!("route path contains {}", describe_char(c)));
        }
        if let Some(c) = path.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(format!(
                "route path \"{path}\" contains '{c}'; routes match the path only, without query or fragment"
            ));
        }
        let (base, pattern) = match path.strip_suffix(WILDCARD) {
            Some(base) => (base, RoutePattern::Prefix(base.to_owned())),
            None => (path, RoutePattern::Exact(path.to_owned())),
        };
        if base.contains("...") {
            return Err(format!(
                "route path \"{path}\" uses '...' in the wrong place; it is only allowed as a final \"/...\" segment"
            ));
        }
        // `base` is "" for `/...`; otherwise it starts with '/'. The first element of the split
        // is the empty string before that leading slash.
        let segments: Vec<&str> = base.split('/').skip(1).collect();
        let last = segments.len().saturating_sub(1);
        for (i, segment) in segments.iter().enumerate() {
            // An exact path may end with '/' (`/` itself, or `/docs/`), which leaves one empty
            // final segment; anywhere else an empty segment means `//`.
            let trailing_slash = i == last && matches!(pattern, RoutePattern::Exact(_));
            if segment.is_empty() && !trailing_slash {
                return Err(format!("route path \"{path}\" has an empty segment ('//')"));
            }
            check_segment(path, segment)?;
        }
        Ok(pattern)
    }

    /// Whether a request path (without query string) matches this pattern.
    ///
    /// The comparison is byte-wise on the path as received: no decoding or normalisation
    /// happens here, so callers should pass the raw request path.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            RoutePattern::Exact(exact) => path == exact,
            RoutePattern::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                // Segment-wise: `/api` matches `/api` and `/api/x` but not `/apix`.
                Some(rest) => prefix.is_empty() || rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }
}

/// Rejects path segments that would not match the way a reader expects.
fn check_segment(path: &str, segment: &str) -> Result<(), String> {
    match segment {
        "." | ".." => Err(format!(
            "route path \"{path}\" has a '{segment}' segment; write the path without it"
        )),
        s if s.contains('*') => Err(format!(
            "route path \"{path}\" contains '*'; for a wildcard end the route with \"/...\""
        )),
        s if s.starts_with(':') => Err(format!(
            "route path \"{path}\" has a parameter segment '{s}'; path parameters are not supported, end the route with \"/...\" instead"
        )),
        _ => Ok(()),
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            f.write_str(host)?;
        }
        fmt::Display::fmt(&self.pattern, f)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(path) => f.write_str(path),
            RoutePattern::Prefix(prefix) => write!(f, "{prefix}{WILDCARD}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(p: &str) -> RoutePattern {
        RoutePattern::Exact(p.to_owned())
    }

    fn prefix(p: &str) -> RoutePattern {
        RoutePattern::Prefix(p.to_owned())
    }

    #[test]
    fn parses_paths() {
        let cases = [
            ("/", exact("/")),
            ("/hello", exact("/hello")),
            ("/hello/", exact("/hello/")),
            ("/a/b/c", exact("/a/b/c")),
            ("/...", prefix("")),
            ("/api/...", prefix("/api")),
            ("/api/v1/...", prefix("/api/v1")),
            ("/file.txt", exact("/file.txt")),
            ("/a..b", exact("/a..b")),
            ("/.well-known/acme", exact("/.well-known/acme")),
            ("/%7Euser", exact("/%7Euser")),
        ];
        for (input, want) in cases {
            assert_eq!(RoutePattern::parse(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let cases = [
            ("", "must start with '/'"),
            ("hello", "must start with '/'"),
            ("//", "empty segment"),
            ("/a//b", "empty segment"),
            ("//...", "empty segment"),
            ("/api//...", "empty segment"),
            ("/api/.../x", "'...' in the wrong place"),
            ("/api...", "'...' in the wrong place"),
            ("/api/....", "'...' in the wrong place"),
            ("/.../...", "'...' in the wrong place"),
            ("/a/./b", "'.' segment"),
            ("/a/../b", "'..' segment"),
            ("/..", "'..' segment"),
            ("/a?b=1", "query or fragment"),
            ("/a#top", "query or fragment"),
            ("/a b", "a space"),
            ("/a\tb", "whitespace"),
            ("/caf\u{e9}", "non-ASCII"),
            ("/api/*", "'*'"),
            ("/users/:id", "parameter segment"),
        ];
        for (input, want) in cases {
            let err = RoutePattern::parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn parses_hosts() {
        let route = Route::parse("API.Example.com/users/...").unwrap();
        assert_eq!(route.host.as_deref(), Some("api.example.com"));
        assert_eq!(route.pattern, prefix("/users"));
        assert_eq!(route.to_string(), "api.example.com/users/...");

        let route = Route::parse("localhost/").unwrap();
        assert_eq!(route.host.as_deref(), Some("localhost"));
        assert_eq!(route.pattern, exact("/"));

        assert_eq!(Route::parse("/x").unwrap().host, None);
    }

    #[test]
    fn rejects_bad_hosts() {
        let cases = [
            ("example.com:8080/x", "ports are not part of routing"),
            ("*.example.com/x", "wildcards are not supported"),
            ("exa mple.com/x", "a space"),
            ("a..b/x", "empty label"),
            ("-a.com/x", "starting or ending with '-'"),
            ("example.com", "must start with '/'"),
            ("hello", "did you mean \"/hello\""),
            ("[::1]/x", "IPv6"),
            ("", "route is empty"),
        ];
        for (input, want) in cases {
            let err = Route::parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "/",
            "/a",
            "/a/",
            "/...",
            "/api/...",
            "example.com/...",
            "a.b.c/x/y/",
        ] {
            let route = Route::parse(s).unwrap();
            assert_eq!(route.to_string(), s);
            assert_eq!(Route::parse(&route.to_string()).unwrap(), route);
        }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let api = prefix("/api");
        assert!(api.matches("/api"));
        assert!(api.matches("/api/"));
        assert!(api.matches("/api/users"));
        assert!(api.matches("/api/users/42"));
        assert!(!api.matches("/apix"));
        assert!(!api.matches("/api-v2"));
        assert!(!api.matches("/ap"));
        assert!(!api.matches("/"));
        assert!(!api.matches("/API"));
        assert!(!api.matches("/x/api"));

        let nested = prefix("/api/v1");
        assert!(nested.matches("/api/v1/x"));
        assert!(!nested.matches("/api/v10"));
        assert!(!nested.matches("/api"));
    }

    #[test]
    fn catch_all_matches_everything() {
        let all = prefix("");
        for path in ["/", "/a", "/a/b/", "/apix", ""] {
            assert!(all.matches(path), "{path}");
        }
    }

    #[test]
    fn exact_is_exact() {
        let root = exact("/");
        assert!(root.matches("/"));
        assert!(!root.matches("/a"));
        assert!(!root.matches(""));

        let hello = exact("/hello");
        assert!(hello.matches("/hello"));
        assert!(!hello.matches("/hello/"));
        assert!(!hello.matches("/hello/x"));
        assert!(!hello.matches("/hell"));

        let slash = exact("/docs/");
        assert!(slash.matches("/docs/"));
        assert!(!slash.matches("/docs"));
    }
}
