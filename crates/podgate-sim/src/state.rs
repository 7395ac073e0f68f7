//! The shared state of one simulated cluster (a test double for a Kubernetes API server).
//!
//! Owns what the HTTP server, the watches and the `SimCluster` handle share: the
//! store, the registry of kinds, the faults, the options that change validation, and
//! the signals that wake watches (a new resourceVersion; a dropped or expired watch).
//! Locks here are never held across an `.await`.

use parking_lot::{Mutex, MutexGuard, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Request counters, for tests that need to know what clients did.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) lists: AtomicU64,
    pub(crate) watches: AtomicU64,
    pub(crate) open_watches: AtomicU64,
}

/// A snapshot of what clients have asked a simulated cluster so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// HTTP requests received (including refused ones).
    pub requests: u64,
    /// LIST requests served (each page counts).
    pub lists: u64,
    /// WATCH streams started.
    pub watches: u64,
    /// WATCH streams open right now.
    pub open_watches: u64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            watches: self.watches.load(Ordering::Relaxed),
            open_watches: self.open_watches.load(Ordering::Relaxed),
        }
    }
}

/// Counts one open watch for as long as it lives.
pub(crate) struct OpenWatch<'a>(&'a AtomicU64);

impl<'a> OpenWatch<'a> {
    pub(crate) fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for OpenWatch<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    pub(crate) counters: Counters,
    store: Mutex<Store>,
    registry: RwLock<Registry>,
    pub(crate) faults: Faults,
    pub(crate) lenient: Leniency,
    pub(crate) bookmark_interval: Duration,
    /// `SimOptions::bearer_token`: when set, every request must carry it.
    pub(crate) bearer_token: Option<String>,
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
            counters: Counters::default(),
            faults: Faults::default(),
            lenient,
            bookmark_interval,
            bearer_token: None,
            changed,
            control,
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock()
    }

    pub(crate) fn registry(&self) -> Registry {
        self.registry.read().clone()
    }

    pub(crate) fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.write())
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
