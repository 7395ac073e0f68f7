//! One LB target's inbox: what changed since its worker's last push. No debounce
//! timer: a worker that is busy pushing finds everything that piled up when it comes
//! back.

use std::collections::{BTreeSet, VecDeque};

use parking_lot::Mutex;
use tokio::sync::Notify;

use podgate_core::index::Changes;
use podgate_core::model::UpstreamKey;

use super::Cause;

/// How many causes a pending set remembers for the audit log.
const MAX_CAUSES: usize = 16;

/// What one LB target has not received yet.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub(crate) upstreams: BTreeSet<UpstreamKey>,
    pub(crate) routes: bool,
    pub(crate) certificates: BTreeSet<String>,
    /// Push everything and remove what the LB holds that is not wanted.
    pub(crate) full: bool,
    /// Why: `cluster: Kind ns/name` of the objects whose events caused the changes.
    pub(crate) causes: VecDeque<String>,
    /// When the oldest change in here was received (for convergence latency).
    pub(crate) since: Option<tokio::time::Instant>,
}

impl Work {
    pub(crate) fn is_empty(&self) -> bool {
        self.upstreams.is_empty() && !self.routes && self.certificates.is_empty() && !self.full
    }

    fn add(&mut self, changes: &Changes, cause: &Cause) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.upstreams.extend(changes.upstreams.iter().cloned());
        self.routes |= !changes.routes.is_empty();
        self.certificates
            .extend(changes.certificates.iter().cloned());
        if self.causes.len() == MAX_CAUSES {
            self.causes.pop_front();
        }
        self.causes.push_back(cause.to_string());
    }

    /// Puts back work that failed to push, under whatever arrived meanwhile.
    pub(crate) fn merge(&mut self, older: Work) {
        self.upstreams.extend(older.upstreams);
        self.routes |= older.routes;
        self.certificates.extend(older.certificates);
        self.full |= older.full;
        self.since = match (self.since, older.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for cause in older.causes.into_iter().rev() {
            if self.causes.len() < MAX_CAUSES {
                self.causes.push_front(cause);
            }
        }
    }
}

/// One worker's inbox.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    work: Mutex<Work>,
    notify: Notify,
}

impl Pending {
    /// Takes everything pending, leaving the inbox empty.
    pub(crate) fn take(&self) -> Work {
        std::mem::take(&mut *self.work.lock())
    }

    /// Returns work that could not be pushed.
    pub(crate) fn restore(&self, work: Work) {
        self.work.lock().merge(work);
    }

    /// Asks for a full resync.
    pub(crate) fn request_full(&self) {
        self.work.lock().full = true;
        self.notify.notify_one();
    }

    /// Adds what one write into the Index changed, and wakes the worker.
    pub(super) fn add(&self, changes: &Changes, cause: &Cause) {
        self.work.lock().add(changes, cause);
        self.notify.notify_one();
    }

    /// Waits until something is pending (returns at once if something already is).
    pub(crate) async fn wait(&self) {
        loop {
            if !self.work.lock().is_empty() {
                return;
            }
            self.notify.notified().await;
        }
    }
}
