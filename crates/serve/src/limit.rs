//! The per-client connection count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::TrustedProxies;

/// Who counts as one client: an IPv4 address, or an IPv6 /64 (one subscriber's prefix: a
/// client holding a /64 could otherwise take a fresh address per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(prefix.into()))
            }
        }
    }
}

/// Open connections per client, for a cap.
#[derive(Debug)]
pub(crate) struct Clients {
    max: Option<usize>,
    trusted: TrustedProxies,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// A connection counted against its client; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    clients: Arc<Clients>,
    key: Option<ClientKey>,
}

impl Clients {
    pub(crate) fn new(max: Option<usize>, trusted: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            max,
            trusted,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `ip`, or `None` if that client already has the most it
    /// may have.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let uncounted = ClientSlot {
            clients: self.clone(),
            key: None,
        };
        let Some(max) = self.max else {
            return Some(uncounted);
        };
        if self.trusted.contains(ip) {
            return Some(uncounted);
        }
        let key = ClientKey::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            key: Some(key),
        })
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ClientKey::of(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_at_most_its_cap_and_its_slots_back() {
        let clients = Clients::new(Some(2), TrustedProxies::default());
        let a = clients.admit(ip("10.0.0.1")).unwrap();
        let _b = clients.admit(ip("10.0.0.1")).unwrap();
        assert!(clients.admit(ip("10.0.0.1")).is_none());
        // Another client is not affected.
        assert!(clients.admit(ip("10.0.0.2")).is_some());
        drop(a);
        assert_eq!(clients.open(ip("10.0.0.1")), 1);
        assert!(clients.admit(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn trusted_proxies_are_not_counted() {
        let clients = Clients::new(Some(1), "10.9.0.0/16".parse().unwrap());
        let held: Vec<_> = (0..10)
            .map(|_| clients.admit(ip("10.9.3.4")).unwrap())
            .collect();
        assert_eq!(held.len(), 10);
        assert_eq!(clients.open(ip("10.9.3.4")), 0);
        let _one = clients.admit(ip("10.10.0.1")).unwrap();
        assert!(clients.admit(ip("10.10.0.1")).is_none());
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let clients = Clients::new(Some(1), TrustedProxies::default());
        let _a = clients.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(clients.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(clients.admit(ip("2001:db8:1:3::1")).is_some());
        // IPv4-mapped addresses count as the IPv4 client.
        let _v4 = clients.admit(ip("192.0.2.1")).unwrap();
        assert!(clients.admit(ip("::ffff:192.0.2.1")).is_none());
    }

    #[test]
    fn no_cap_counts_nothing() {
        let clients = Clients::new(None, TrustedProxies::default());
        let held: Vec<_> = (0..100)
            .map(|_| clients.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 100);
        assert_eq!(clients.open(ip("10.0.0.1")), 0);
    }
}
