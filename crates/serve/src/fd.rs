//! The open-file limit and the listeners' connection caps inside it.
//!
//! Every open connection is a file descriptor. If the listeners together may hold more
//! connections than the process may open files, a flood on one of them (the control API,
//! say) takes the descriptors the others need to accept — and the stores need to open files.
//! So `nimbus up` raises the soft limit to the hard one, and the caps are fitted below it with
//! a reserve for everything that is not a connection.

use rustix::process::{Resource, getrlimit, setrlimit};

/// The soft `RLIMIT_NOFILE` (`None`: unlimited or unknown).
pub fn open_file_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as servers commonly do at start
/// (systemd's default soft limit is 1024). Returns the soft limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
    open_file_limit()
}

/// The largest per-listener cap that lets `listeners` listeners, each full, leave a reserve
/// of the open-file limit `limit` (a quarter, at least 256 descriptors) for the stores,
/// components, outbound connections and the rest. `wanted` is the operator's cap; the result
/// is at most that, and at least 1.
pub fn fit_connection_caps(limit: Option<u64>, listeners: usize, wanted: usize) -> usize {
    let Some(limit) = limit else {
        return wanted.max(1);
    };
    let reserve = (limit / 4).max(256);
    let room = limit.saturating_sub(reserve) / (listeners.max(1) as u64);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_a_reserve_of_descriptors() {
        // Plenty of room: the operator's cap stands.
        assert_eq!(fit_connection_caps(Some(1 << 20), 3, 4096), 4096);
        // 20,000 files: 5,000 kept back, 5,000 per listener.
        assert_eq!(fit_connection_caps(Some(20_000), 3, 10_000), 5_000);
        // systemd's default 1024: 256 kept back, 256 each.
        assert_eq!(fit_connection_caps(Some(1024), 3, 4096), 256);
        // Nothing left: one connection each rather than none.
        assert_eq!(fit_connection_caps(Some(100), 3, 4096), 1);
        assert_eq!(fit_connection_caps(None, 3, 4096), 4096);
    }

    #[test]
    fn the_limit_is_read_and_raised_to_the_hard_limit() {
        let hard = getrlimit(Resource::Nofile).maximum;
        assert_eq!(raise_open_file_limit(), hard);
    }
}
