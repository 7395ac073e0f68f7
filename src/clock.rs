//! Wall-clock time for what people read: status `since_ms`, audit entries, the
//! weights ConfigMap's timestamps. Timers, backoff, leases and deadlines use
//! `tokio::time` instead, so tests can pause them; never measure a duration with this.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
