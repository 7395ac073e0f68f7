//! What the sync layer measures: convergence latency, from the first watch event of a
//! push to the LB's acknowledgement of it.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Shared by every worker of a controller; cheap to clone (one shared histogram).
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    /// Seconds from the oldest change in a push being received to its acknowledgement.
    pub(crate) convergence: Histogram,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        // 0.5 ms … ~16 s.
        Self {
            convergence: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        }
    }
}
