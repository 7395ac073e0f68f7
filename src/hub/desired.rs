//! The one shared Index and the fan-out of its changes to every LB target's inbox.
//!
//! Writers hand [`Input`]s to [`Desired::apply`] with the [`Cause`] behind them; each
//! worker holds a [`Pending`] inbox that accumulates what changed since its last push.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use podgate_core::index::{Changes, Hold, Index, Input, Object, Prepared, Snapshot};

use super::{Cause, Pending};

/// The Index behind a lock, with the workers that follow it.
pub struct Desired {
    index: Mutex<Index>,
    subscribers: Mutex<Vec<Arc<Pending>>>,
    /// Where the holds that writes start go (the hold-down timer), if anywhere.
    holds: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Hold>>>,
    /// Bumped by every write that may have changed the diagnostics, so readers of
    /// diagnostics (Events) recompute them only when needed.
    diagnostics_generation: AtomicU64,
    /// Counts writes that changed something, bumped after their changes reached every
    /// inbox: a worker that reads `version` before taking its inbox holds everything
    /// up to that version (see [`Desired::version`]).
    version: AtomicU64,
}

impl Desired {
    pub fn new(index: Index) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(index),
            subscribers: Mutex::new(Vec::new()),
            holds: Mutex::new(None),
            diagnostics_generation: AtomicU64::new(0),
            version: AtomicU64::new(0),
        })
    }

    /// Applies one input and hands its changes to every worker.
    pub fn apply(&self, cause: &Cause, input: Input) -> Changes {
        self.apply_all(cause, [input])
    }

    /// Applies several inputs as one write: under one lock, so no reader and no
    /// worker sees some applied and others not, with one merged change report.
    pub(crate) fn apply_all(
        &self,
        cause: &Cause,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Changes {
        let mut index = self.index.lock();
        let mut changes = Changes::default();
        for input in inputs {
            changes.merge(index.dispatch(input));
        }
        // Published under the lock: whoever reads the Index sees `version` counting
        // every write it sees (the readiness gate relies on that).
        self.publish(cause, &changes);
        drop(index);
        changes
    }

    /// Applies `input` unless `admit`, shown the Index as it is right before the
    /// change, refuses it (`None`). For the floor guards: what they count and what
    /// they let through see the same state.
    pub(crate) fn apply_if(
        &self,
        cause: &Cause,
        input: Input,
        admit: impl FnOnce(&Index, &Input) -> bool,
    ) -> Option<Changes> {
        let mut index = self.index.lock();
        if !admit(&index, &input) {
            return None;
        }
        let changes = index.dispatch(input);
        self.publish(cause, &changes);
        drop(index);
        Some(changes)
    }

    /// Hands one write's changes on: holds to the hold-down timer, everything else to
    /// every inbox, then counts the write (`version`). Called with the Index locked, so
    /// versions follow the order of writes and a reader of the Index under its lock
    /// (`read_versioned`) sees the version of everything it sees. Takes only the inbox
    /// and channel locks, which nothing holds while taking the Index's.
    fn publish(&self, cause: &Cause, changes: &Changes) {
        if !changes.held.is_empty()
            && let Some(tx) = self.holds.lock().as_ref()
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
            for pending in self.subscribers.lock().iter() {
                pending.add(changes, cause);
            }
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// `f` of the Index and the version it is at (every write it shows is counted).
    pub(crate) fn read_versioned<R>(&self, f: impl FnOnce(&Index, u64) -> R) -> R {
        let index = self.index.lock();
        f(&index, self.version())
    }

    /// How many writes have changed something so far. Every change of those writes is
    /// in every inbox already: a worker that reads this, then takes its inbox and
    /// pushes it, has the LB holding at least this version.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every hold a later write starts goes to the returned receiver (replacing any
    /// earlier one). Whoever holds it must release them (`Input::HoldReleased`).
    pub(crate) fn take_holds(&self) -> tokio::sync::mpsc::UnboundedReceiver<Hold> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.holds.lock() = Some(tx);
        rx
    }

    /// Registers a new worker; its first push is a full sync.
    pub(crate) fn subscribe(&self) -> Arc<Pending> {
        let pending = Arc::new(Pending::default());
        pending.request_full();
        self.subscribers.lock().push(pending.clone());
        pending
    }

    /// Changes whenever the diagnostics may have changed.
    pub(crate) fn diagnostics_generation(&self) -> u64 {
        self.diagnostics_generation.load(Ordering::Relaxed)
    }

    /// Translates an object for the Index without applying it (see `Index::prepare`):
    /// a watcher buffers these during a relist.
    pub(crate) fn prepare(&self, object: &Object) -> Option<Prepared> {
        self.index.lock().prepare(object)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.index.lock().snapshot()
    }

    /// Reads the Index under the lock. Keep `f` short: watchers wait meanwhile.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.index.lock())
    }
}
