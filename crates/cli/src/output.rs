//! Output helpers shared by commands.

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The URL a user would open for a route: `/api/...` → `<base>/api/`, host routes as
/// `http://host/...` (the gateway's port kept).
pub fn route_url(gateway_url: &str, route: &str) -> String {
    let (host, path) = match route.find('/') {
        Some(0) => (None, route),
        Some(i) => (Some(&route[..i]), &route[i..]),
        None => (None, route),
    };
    let path = path.strip_suffix("...").unwrap_or(path);
    match host {
        None => format!("{gateway_url}{path}"),
        Some(host) => {
            let port = gateway_url.rsplit(':').next().unwrap_or("80");
            format!("http://{host}:{port}{path}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route_url;

    #[test]
    fn urls_for_routes() {
        let base = "http://127.0.0.1:8080";
        assert_eq!(route_url(base, "/hello"), "http://127.0.0.1:8080/hello");
        assert_eq!(route_url(base, "/api/..."), "http://127.0.0.1:8080/api/");
        assert_eq!(route_url(base, "/..."), "http://127.0.0.1:8080/");
        assert_eq!(
            route_url(base, "shop.example.com/x"),
            "http://shop.example.com:8080/x"
        );
    }
}
