//! Where one cluster's watchers stand: never synced, synced, or stale since when.
//! "Stale" never means "empty": the Index keeps the last-known objects.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::index::Kind;
use crate::sync::audit::now_ms;

#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    /// `never_synced`, `synced` or `stale`.
    pub state: &'static str,
    /// When the current state began (ms since the Unix epoch).
    pub since_ms: u64,
    pub synced_kinds: BTreeSet<Kind>,
    pub last_error: Option<String>,
    /// When the last watch event arrived (ms since the Unix epoch).
    pub last_event_ms: Option<u64>,
    /// Completed lists (the first one of each kind, then every relist).
    pub lists: u64,
    /// Failed watches (each restarts with backoff) and failed liveness probes.
    pub errors: u64,
}

/// Shared between a cluster's watchers and the admin view.
#[derive(Clone, Debug)]
pub struct StatusCell {
    inner: Arc<Mutex<ClusterStatus>>,
    kinds: usize,
}

impl StatusCell {
    pub fn new(name: &str, kinds: usize) -> Self {
        let status = ClusterStatus {
            name: name.to_owned(),
            state: "never_synced",
            since_ms: now_ms(),
            synced_kinds: BTreeSet::new(),
            last_error: None,
            last_event_ms: None,
            lists: 0,
            errors: 0,
        };
        Self {
            inner: Arc::new(Mutex::new(status)),
            kinds,
        }
    }

    pub fn get(&self) -> ClusterStatus {
        self.lock().clone()
    }

    /// A watcher of `kind` completed a list, or received an event.
    pub fn healthy(&self, kind: Kind, listed: bool) {
        let mut s = self.lock();
        s.last_event_ms = Some(now_ms());
        if listed {
            s.synced_kinds.insert(kind);
            s.lists += 1;
        }
        let all_listed = s.synced_kinds.len() >= self.kinds;
        if all_listed && s.state != "synced" {
            s.state = "synced";
            s.since_ms = now_ms();
            s.last_error = None;
        }
    }

    /// The API server answered: the cluster is synced again once every kind has listed.
    pub fn reachable(&self) {
        let mut s = self.lock();
        if s.state == "stale" && s.synced_kinds.len() >= self.kinds {
            s.state = "synced";
            s.since_ms = now_ms();
            s.last_error = None;
        }
    }

    /// A watcher failed: the cluster is stale until the next successful event.
    pub fn failed(&self, error: String) {
        let mut s = self.lock();
        s.errors += 1;
        if s.state == "synced" {
            s.state = "stale";
            s.since_ms = now_ms();
        }
        s.last_error = Some(error);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterStatus> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
