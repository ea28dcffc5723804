//! Tunables of a listener.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// Timeouts and caps of one listener (see the crate docs for what each guarantees).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A client must send a whole request head within this time of its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long; so is one whose
    /// client leaves a response unread this long.
    pub idle_timeout: Duration,
    /// Connections open at once; past it the listener stops accepting until one closes.
    pub max_connections: usize,
    /// Connections open at once from one client address (`None`: no cap).
    pub max_connections_per_client: Option<usize>,
    /// Addresses exempt from the per-client cap (load balancers, reverse proxies).
    pub trusted_proxies: TrustedProxies,
    /// On shutdown, requests in flight get this long to finish.
    pub drain_timeout: Duration,
    /// hyper's read buffer bound (`None`: hyper's default, ~400 KiB).
    pub max_buf_size: Option<usize>,
    /// Most request headers accepted (`None`: hyper's default, 100).
    pub max_headers: Option<usize>,
}

impl ServeConfig {
    /// Connections per listener when the operator sets none (and the open-file limit has
    /// room for it; see [`crate::fit_connection_caps`]).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: None,
            trusted_proxies: TrustedProxies::default(),
            drain_timeout: Duration::from_secs(30),
            max_buf_size: None,
            max_headers: None,
        }
    }
}

/// Addresses and networks (`10.0.0.7`, `10.1.0.0/16`, `fd00::/8`) whose connections are not
/// counted against the per-client cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy list that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{entry}` is not an IP address or network (expected e.g. 10.0.0.7 or 10.0.0.0/8)")]
pub struct ProxyListError {
    /// The entry that failed.
    pub entry: String,
}

impl TrustedProxies {
    /// Whether connections from `ip` are exempt from the per-client cap.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = ProxyListError;

    /// A comma-separated list; blank entries are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(ProxyListError {
                            entry: entry.to_owned(),
                        });
                    }
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn proxies_parse_addresses_and_networks() {
        let list: TrustedProxies = "10.0.0.7, 192.168.0.0/16,,fd00::/8".parse().unwrap();
        assert!(list.contains("10.0.0.7".parse().unwrap()));
        assert!(!list.contains("10.0.0.8".parse().unwrap()));
        assert!(list.contains("192.168.44.1".parse().unwrap()));
        assert!(list.contains("fd12::1".parse().unwrap()));
        // An IPv4 client seen on a dual-stack socket.
        assert!(list.contains("::ffff:10.0.0.7".parse().unwrap()));
        assert!(!list.contains("127.0.0.1".parse().unwrap()));
        assert_eq!(list.to_string(), "10.0.0.7/32,192.168.0.0/16,fd00::/8");
    }

    #[test]
    fn a_bad_entry_is_named() {
        let err = "10.0.0.1,lb.internal"
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert_eq!(err.entry, "lb.internal");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }
}
