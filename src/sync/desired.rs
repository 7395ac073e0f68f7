//! The one shared Index and the fan-out of its changes to every LB worker.
//!
//! Watchers call [`Desired::mutate`]; each worker holds a [`Pending`] set that
//! accumulates what changed since its last push. No debounce timer: a worker that is
//! busy pushing finds everything that piled up when it comes back.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use podgate_core::index::{Changes, Hold, Index, Object, Prepared, Snapshot};
use podgate_core::model::UpstreamKey;

/// How many causes a pending set remembers for the audit log.
const MAX_CAUSES: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, never a
    // half-applied Index mutation (mutations do not panic), so recovering is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one LB target has not received yet.
#[derive(Debug, Default)]
pub struct Work {
    pub upstreams: BTreeSet<UpstreamKey>,
    pub routes: bool,
    pub certificates: BTreeSet<String>,
    /// Push everything and remove what the LB holds that is not wanted.
    pub full: bool,
    /// Why: `cluster: Kind ns/name` of the objects whose events caused the changes.
    pub causes: VecDeque<String>,
    /// When the oldest change in here was received (for convergence latency).
    pub since: Option<tokio::time::Instant>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty() && !self.routes && self.certificates.is_empty() && !self.full
    }

    fn add(&mut self, changes: &Changes, cause: &str) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.upstreams.extend(changes.upstreams.iter().cloned());
        self.routes |= !changes.routes.is_empty();
        self.certificates
            .extend(changes.certificates.iter().cloned());
        if self.causes.len() == MAX_CAUSES {
            self.causes.pop_front();
        }
        self.causes.push_back(cause.to_owned());
    }

    /// Puts back work that failed to push, under whatever arrived meanwhile.
    fn merge(&mut self, older: Work) {
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
pub struct Pending {
    work: Mutex<Work>,
    notify: Notify,
}

impl Pending {
    /// Takes everything pending, leaving the inbox empty.
    pub fn take(&self) -> Work {
        std::mem::take(&mut *lock(&self.work))
    }

    /// Returns work that could not be pushed.
    pub fn restore(&self, work: Work) {
        lock(&self.work).merge(work);
    }

    /// Asks for a full resync.
    pub fn request_full(&self) {
        lock(&self.work).full = true;
        self.notify.notify_one();
    }

    /// Waits until something is pending (returns at once if something already is).
    pub async fn wait(&self) {
        loop {
            if !lock(&self.work).is_empty() {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// The Index behind a lock, with the workers that follow it.
pub struct Desired {
    index: Mutex<Index>,
    subscribers: Mutex<Vec<Arc<Pending>>>,
    /// Where the holds that mutations start go (the hold-down timer), if anywhere.
    holds: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Hold>>>,
    /// Bumped by every mutation that may have changed the diagnostics, so readers of
    /// diagnostics (Events) recompute them only when needed.
    diagnostics_generation: AtomicU64,
}

impl Desired {
    pub fn new(index: Index) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(index),
            subscribers: Mutex::new(Vec::new()),
            holds: Mutex::new(None),
            diagnostics_generation: AtomicU64::new(0),
        })
    }

    /// Runs one mutation and hands its changes to every worker. `cause` names the
    /// object behind it, for the audit log.
    pub fn mutate(&self, cause: &str, f: impl FnOnce(&mut Index) -> Changes) -> Changes {
        let changes = f(&mut lock(&self.index));
        if !changes.held.is_empty()
            && let Some(tx) = lock(&self.holds).as_ref()
        {
            for hold in &changes.held {
                let _ = tx.send(hold.clone());
            }
        }
        // Only what the Index flags: an endpoint change alone cannot change a
        // diagnostic (unroutable endpoints are flagged), and recomputing them is a pass
        // over every Ingress under this lock.
        if changes.diagnostics {
            self.diagnostics_generation.fetch_add(1, Ordering::Relaxed);
        }
        if !changes.is_empty() {
            for pending in lock(&self.subscribers).iter() {
                lock(&pending.work).add(&changes, cause);
                pending.notify.notify_one();
            }
        }
        changes
    }

    /// Every hold a later mutation starts goes to the returned receiver (replacing any
    /// earlier one). Whoever holds it must release them (`Index::release_hold`).
    pub fn take_holds(&self) -> tokio::sync::mpsc::UnboundedReceiver<Hold> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.holds) = Some(tx);
        rx
    }

    /// Registers a new worker; its first push is a full sync.
    pub fn subscribe(&self) -> Arc<Pending> {
        let pending = Arc::new(Pending::default());
        pending.request_full();
        lock(&self.subscribers).push(pending.clone());
        pending
    }

    /// Changes whenever the diagnostics may have changed.
    pub fn diagnostics_generation(&self) -> u64 {
        self.diagnostics_generation.load(Ordering::Relaxed)
    }

    /// Translates an object for the Index without applying it (see `Index::prepare`):
    /// a watcher buffers these during a relist.
    pub fn prepare(&self, object: &Object) -> Option<Prepared> {
        lock(&self.index).prepare(object)
    }

    pub fn snapshot(&self) -> Snapshot {
        lock(&self.index).snapshot()
    }

    /// Reads the Index under the lock. Keep `f` short: watchers wait meanwhile.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&lock(&self.index))
    }
}
