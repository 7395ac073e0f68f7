//! Where one cluster's watchers stand: never synced, synced, stale since when, or
//! expired (stale longer than its `stale_ttl`: endpoints withdrawn). "Stale" never
//! means "empty": the Index keeps the last-known objects. Also shows a relist held by
//! the floor guard.

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::now_ms;
use crate::logging::RateLimited;
use podgate_core::index::Kind;

/// A relist held by the floor guard (see `cluster::guard`, and `cluster::reach` for
/// Subnets).
#[derive(Clone, Debug, Serialize)]
pub struct GuardedRelist {
    /// `EndpointSlice` or `Subnet`.
    pub(crate) kind: &'static str,
    /// Endpoints the cluster had, and how many the relist would have withdrawn.
    pub(crate) before: usize,
    pub(crate) withdrawn: usize,
    /// When it was held (ms since the Unix epoch).
    pub(crate) since_ms: u64,
    /// How long after that a fresh list confirms it.
    pub(crate) confirm_after_ms: u64,
}

/// Where one cluster's watches stand. Serialized in snake_case (`never_synced`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    /// Not every kind has listed yet: nothing is known, which is not "empty".
    NeverSynced,
    /// Every kind listed and the API server answers.
    Synced,
    /// A watch failed or the API server stopped answering; last-known state is kept.
    Stale,
    /// Stale longer than `stale_ttl`: its endpoints are withdrawn, records kept.
    Expired,
}

impl ClusterState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NeverSynced => "never_synced",
            Self::Synced => "synced",
            Self::Stale => "stale",
            Self::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    /// The API server's address, as the kubeconfig gives it.
    pub(crate) api_server: String,
    pub state: ClusterState,
    /// When the current state began (ms since the Unix epoch).
    pub(crate) since_ms: u64,
    pub(crate) synced_kinds: BTreeSet<Kind>,
    pub(crate) last_error: Option<String>,
    /// A relist held by the floor guard, waiting for confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) guarded_relist: Option<GuardedRelist>,
    /// When the last watch event arrived (ms since the Unix epoch).
    pub(crate) last_event_ms: Option<u64>,
    /// Completed lists (the first one of each kind, then every relist).
    pub(crate) lists: u64,
    /// Failed watches (each restarts with backoff) and failed liveness probes.
    pub(crate) errors: u64,
    /// `unknown` until discovery answered, then `absent` (no Gateway API CRDs) or
    /// `watched`.
    pub(crate) gateway_api: &'static str,
}

/// What [`StatusCell::failed`] logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Said {
    /// The cluster went stale: one WARN.
    WentStale,
    /// Still stale, a minute after the last line: a reminder.
    Reminder,
    /// Nothing above debug.
    Nothing,
}

/// Shared between a cluster's watchers and the admin view.
#[derive(Clone, Debug)]
pub struct StatusCell {
    inner: Arc<Mutex<ClusterStatus>>,
    kinds: usize,
    /// Becomes `true` once every kind has listed (and stays so).
    synced_once: tokio::sync::watch::Sender<bool>,
    /// At most one "still stale" reminder a minute, however many watchers fail.
    reminder: Arc<RateLimited>,
}

impl StatusCell {
    pub(crate) fn new(name: &str, api_server: &str, kinds: usize) -> Self {
        let status = ClusterStatus {
            name: name.to_owned(),
            api_server: api_server.to_owned(),
            state: ClusterState::NeverSynced,
            since_ms: now_ms(),
            synced_kinds: BTreeSet::new(),
            last_error: None,
            guarded_relist: None,
            last_event_ms: None,
            lists: 0,
            errors: 0,
            gateway_api: "unknown",
        };
        Self {
            inner: Arc::new(Mutex::new(status)),
            kinds,
            synced_once: tokio::sync::watch::Sender::new(false),
            reminder: Arc::new(RateLimited::new(std::time::Duration::from_mins(1))),
        }
    }

    /// Returns once every kind of this cluster has listed into the Index at least once.
    pub(crate) async fn wait_synced_once(&self) {
        let mut rx = self.synced_once.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Records what discovery said of the Gateway API; whether that is new.
    pub(crate) fn set_gateway_api(&self, state: &'static str) -> bool {
        let mut s = self.inner.lock();
        std::mem::replace(&mut s.gateway_api, state) != state
    }

    pub fn get(&self) -> ClusterStatus {
        self.inner.lock().clone()
    }

    /// A watcher of `kind` completed a list, or received an event.
    pub(crate) fn healthy(&self, kind: Kind, listed: bool) {
        let mut s = self.inner.lock();
        s.last_event_ms = Some(now_ms());
        if listed {
            s.synced_kinds.insert(kind);
            s.lists += 1;
        }
        let all_listed = s.synced_kinds.len() >= self.kinds;
        if all_listed && s.state != ClusterState::Synced {
            Self::back(&s);
            s.state = ClusterState::Synced;
            s.since_ms = now_ms();
            s.last_error = None;
        }
        if all_listed {
            self.synced_once
                .send_if_modified(|v| !std::mem::replace(v, true));
        }
    }

    /// The API server answered: the cluster is synced again once every kind has listed.
    /// Whether it came back now.
    pub(crate) fn reachable(&self) -> bool {
        let mut s = self.inner.lock();
        if s.state == ClusterState::Stale && s.synced_kinds.len() >= self.kinds {
            Self::back(&s);
            s.state = ClusterState::Synced;
            s.since_ms = now_ms();
            s.last_error = None;
            return true;
        }
        false
    }

    /// A stale or expired cluster's API server answered a full list again (see
    /// `cluster::stale`): it is synced again.
    pub(crate) fn recovered(&self) {
        let mut s = self.inner.lock();
        if matches!(s.state, ClusterState::Stale | ClusterState::Expired) {
            Self::back(&s);
            s.state = ClusterState::Synced;
            s.since_ms = now_ms();
            s.last_error = None;
        }
    }

    /// A stale cluster's endpoints were withdrawn after its `stale_ttl`.
    pub(crate) fn expired(&self) {
        let mut s = self.inner.lock();
        if s.state == ClusterState::Stale {
            s.state = ClusterState::Expired;
            s.since_ms = now_ms();
        }
    }

    /// Shows (or clears) a relist held by the floor guard.
    /// Clears a held withdrawal of `kind` only (the other guard may hold one too).
    pub(crate) fn clear_guarded(&self, kind: &str) {
        let mut s = self.inner.lock();
        if s.guarded_relist.as_ref().is_some_and(|g| g.kind == kind) {
            s.guarded_relist = None;
        }
    }

    pub(crate) fn set_guarded(&self, relist: Option<GuardedRelist>) {
        self.inner.lock().guarded_relist = relist;
    }

    /// A watcher or the liveness probe failed: the cluster is stale until the API server
    /// answers again. Logs once when it goes stale (WARN), then at most a reminder a
    /// minute while it stays so; every failure is at debug.
    pub(crate) fn failed(&self, error: String) -> Said {
        let mut s = self.inner.lock();
        s.errors += 1;
        tracing::debug!(cluster = %s.name, %error, "cluster API request failed");
        let said = if s.state == ClusterState::Synced {
            s.state = ClusterState::Stale;
            s.since_ms = now_ms();
            tracing::warn!(cluster = %s.name, api_server = %s.api_server, %error, "cluster stale: its API server does not answer; last-known endpoints kept");
            self.reminder.admit();
            Said::WentStale
        } else if matches!(s.state, ClusterState::Stale | ClusterState::Expired)
            && let Some(failures) = self.reminder.admit()
        {
            let stale_for_s = now_ms().saturating_sub(s.since_ms) / 1000;
            tracing::warn!(cluster = %s.name, api_server = %s.api_server, %error, stale_for_s, failures, "cluster still stale");
            Said::Reminder
        } else {
            Said::Nothing
        };
        s.last_error = Some(error);
        said
    }

    /// Logs a stale or expired cluster's return (INFO), with how long it was away;
    /// whether it was away.
    fn back(s: &ClusterStatus) -> bool {
        let away = matches!(s.state, ClusterState::Stale | ClusterState::Expired);
        if away {
            let stale_for_ms = now_ms().saturating_sub(s.since_ms);
            tracing::info!(cluster = %s.name, api_server = %s.api_server, stale_for_ms, "cluster reachable again");
        }
        away
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_expired_and_back() {
        let cell = StatusCell::new("idc", "https://127.0.0.1:6443/", 1);
        cell.failed("down".to_owned());
        cell.expired();
        cell.recovered();
        assert_eq!(
            cell.get().state,
            ClusterState::NeverSynced,
            "nothing to be stale about yet"
        );
        cell.healthy(Kind::EndpointSlice, true);
        assert_eq!(cell.get().state, ClusterState::Synced);
        cell.expired();
        assert_eq!(
            cell.get().state,
            ClusterState::Synced,
            "only a stale cluster expires"
        );
        cell.failed("down".to_owned());
        assert_eq!(cell.get().state, ClusterState::Stale);
        cell.expired();
        assert_eq!(cell.get().state, ClusterState::Expired);
        cell.failed("still down".to_owned());
        assert_eq!(
            cell.get().state,
            ClusterState::Expired,
            "a failure does not undo expiry"
        );
        cell.recovered();
        let s = cell.get();
        assert_eq!((s.state, s.last_error), (ClusterState::Synced, None));
    }

    #[test]
    fn a_cluster_going_stale_is_said_once_and_its_return_once() {
        let cell = StatusCell::new("idc", "https://127.0.0.1:6443/", 1);
        cell.healthy(Kind::EndpointSlice, true);
        assert_eq!(
            cell.failed("connection refused".to_owned()),
            Said::WentStale
        );
        // Five watchers and the probe failing, again and again, within a minute.
        for _ in 0..120 {
            assert_eq!(cell.failed("connection refused".to_owned()), Said::Nothing);
        }
        assert!(cell.reachable(), "its return is said");
        assert!(!cell.reachable(), "once");
        assert_eq!(cell.failed("down again".to_owned()), Said::WentStale);
    }

    /// What `f` logs, as the text formatter writes it.
    fn logged(f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8_lossy(&buf.lock()).into_owned()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_stale_warning_names_the_api_server_and_the_cause() {
        let cell = StatusCell::new("idc", "https://10.0.0.1:6443/", 1);
        cell.healthy(Kind::EndpointSlice, true);
        let out = logged(|| {
            cell.failed(
                "API server unreachable: tcp connect error: Connection refused (os error 111)"
                    .to_owned(),
            );
            cell.reachable();
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "one WARN, one INFO: {out}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains("api_server=https://10.0.0.1:6443/"),
            "{out}"
        );
        assert!(lines[0].contains("os error 111"), "the OS error: {out}");
        assert!(
            lines[1].contains("INFO") && lines[1].contains("api_server=https://10.0.0.1:6443/"),
            "{out}"
        );
    }
}
