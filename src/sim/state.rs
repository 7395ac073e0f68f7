//! The shared state of one simulated cluster (a test double for a Kubernetes API server).
//!
//! Owns what the HTTP server, the watches and the `SimCluster` handle share: the
//! store, the registry of kinds, the faults, the options that change validation, and
//! the signals that wake watches (a new resourceVersion; a dropped or expired watch).
//! Locks here are never held across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::faults::Faults;
use super::resources::Registry;
use super::store::Store;
use super::validate::Leniency;

/// Counters that open watches follow: when one moves, every open watch ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WatchControl {
    /// Bumped by `drop_watches`: watches end abruptly (connection error).
    pub(crate) drops: u64,
    /// Bumped by `expire_history`: watches get an ERROR 410 Expired event, then end.
    pub(crate) expiries: u64,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    registry: RwLock<Registry>,
    pub(crate) faults: Faults,
    pub(crate) lenient: Leniency,
    pub(crate) bookmark_interval: Duration,
    /// The current resourceVersion, published after every committed write.
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) control: watch::Sender<WatchControl>,
}

impl Shared {
    pub(crate) fn new(history: usize, lenient: Leniency, bookmark_interval: Duration) -> Self {
        let store = Store::new(history);
        let (changed, _) = watch::channel(store.current_rv());
        let (control, _) = watch::channel(WatchControl::default());
        Self {
            store: Mutex::new(store),
            registry: RwLock::new(Registry::builtin()),
            faults: Faults::default(),
            lenient,
            bookmark_interval,
            changed,
            control,
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Wakes the watches after writes; call with the store's current version.
    pub(crate) fn publish(&self, rv: u64) {
        self.changed.send_if_modified(|cur| {
            let moved = *cur != rv;
            *cur = rv;
            moved
        });
    }
}
