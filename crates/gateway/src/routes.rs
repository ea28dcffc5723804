//! The route table: pure matching logic, no I/O.
//!
//! Precedence, most specific first:
//! 1. routes for the request's host before host-less routes;
//! 2. within each, an exact route before any wildcard;
//! 3. among wildcards, the longest prefix.
//!
//! Lookup walks the request path's segment boundaries from the longest prefix to the shortest
//! and probes a hash map at each, so its cost is O(path segments), independent of how many
//! routes are deployed. Two routes with the same host and pattern are a conflict, reported when
//! the table is built (that is: at deploy time, before anything changes).

use std::collections::HashMap;

use nimbus_manifest::{Route, RoutePattern};

/// Where a route came from, for conflict messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOwner {
    /// App name.
    pub app: String,
    /// Function name.
    pub function: String,
}

impl std::fmt::Display for RouteOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.function)
    }
}

/// Two functions claim the same route.
#[derive(Debug, Clone, thiserror::Error)]
#[error("route `{route}` of {second} conflicts with the same route of {first}")]
pub struct RouteConflict {
    /// The contested route.
    pub route: String,
    /// The function that had it first.
    pub first: RouteOwner,
    /// The function that also claims it.
    pub second: RouteOwner,
}

type Key = (Option<String>, String);

/// Routes to targets of type `T`.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    exact: HashMap<Key, (RouteOwner, T)>,
    prefix: HashMap<Key, (RouteOwner, T)>,
    has_hosts: bool,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            prefix: HashMap::new(),
            has_hosts: false,
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds a table, rejecting conflicting routes.
    pub fn build(
        routes: impl IntoIterator<Item = (Route, RouteOwner, T)>,
    ) -> Result<Self, RouteConflict> {
        let mut table = Self::default();
        for (route, owner, target) in routes {
            let (map, path) = match &route.pattern {
                RoutePattern::Exact(p) => (&mut table.exact, p.clone()),
                RoutePattern::Prefix(p) => (&mut table.prefix, p.clone()),
            };
            table.has_hosts |= route.host.is_some();
            let key = (route.host.clone(), path);
            if let Some((first, _)) = map.get(&key) {
                return Err(RouteConflict {
                    route: route.to_string(),
                    first: first.clone(),
                    second: owner,
                });
            }
            map.insert(key, (owner, target));
        }
        Ok(table)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the target for a request. `host` is the Host header without port.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&T> {
        if self.has_hosts
            && let Some(host) = host
        {
            let host = host.to_ascii_lowercase();
            if let Some(found) = self.lookup_in(Some(host), path) {
                return Some(found);
            }
        }
        self.lookup_in(None, path)
    }

    fn lookup_in(&self, host: Option<String>, path: &str) -> Option<&T> {
        let mut key = (host, path.to_owned());
        if let Some((_, t)) = self.exact.get(&key) {
            return Some(t);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // `/a/b/c` probes `/a/b/c`, `/a/b`, `/a`, then `` (the catch-all `/...`).
        let mut end = path.len();
        loop {
            key.1.truncate(end);
            if let Some((_, t)) = self.prefix.get(&key) {
                return Some(t);
            }
            if end == 0 {
                return None;
            }
            end = path[..end].rfind('/').unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(f: &str) -> RouteOwner {
        RouteOwner {
            app: "app".into(),
            function: f.into(),
        }
    }

    fn table(routes: &[(&str, &str)]) -> RouteTable<String> {
        RouteTable::build(
            routes
                .iter()
                .map(|(r, f)| (Route::parse(r).unwrap(), owner(f), f.to_string())),
        )
        .unwrap()
    }

    #[test]
    fn most_specific_wins() {
        let t = table(&[
            ("/...", "all"),
            ("/api/...", "api"),
            ("/api/users/...", "users"),
            ("/api/users/me", "me"),
            ("shop.example.com/...", "shop"),
        ]);
        let at = |host: Option<&str>, path: &str| t.lookup(host, path).cloned();
        assert_eq!(at(None, "/api/users/me").as_deref(), Some("me"));
        assert_eq!(at(None, "/api/users/me/x").as_deref(), Some("users"));
        assert_eq!(at(None, "/api/users").as_deref(), Some("users"));
        assert_eq!(at(None, "/api/orders").as_deref(), Some("api"));
        assert_eq!(at(None, "/apix").as_deref(), Some("all"));
        assert_eq!(at(None, "/").as_deref(), Some("all"));
        assert_eq!(
            at(Some("SHOP.example.com"), "/api/users/me").as_deref(),
            Some("shop")
        );
        assert_eq!(
            at(Some("other.example.com"), "/api").as_deref(),
            Some("api")
        );
    }

    #[test]
    fn no_match_without_catch_all() {
        let t = table(&[("/hello", "h"), ("/api/...", "api")]);
        assert!(t.lookup(None, "/hello/").is_none());
        assert!(t.lookup(None, "/ap").is_none());
        assert!(t.lookup(None, "/").is_none());
        assert_eq!(t.lookup(None, "/api").map(String::as_str), Some("api"));
    }

    #[test]
    fn conflicts_name_both_functions() {
        let err = RouteTable::build([
            (Route::parse("/x/...").unwrap(), owner("a"), 1),
            (Route::parse("/x/...").unwrap(), owner("b"), 2),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route `/x/...` of app/b conflicts with the same route of app/a"
        );
        // Same path on different hosts is not a conflict.
        RouteTable::build([
            (Route::parse("a.example.com/x").unwrap(), owner("a"), 1),
            (Route::parse("b.example.com/x").unwrap(), owner("b"), 2),
            (Route::parse("/x").unwrap(), owner("c"), 3),
        ])
        .unwrap();
    }
}
