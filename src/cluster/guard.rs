//! The floor guard: a relist of EndpointSlices, or a burst of watch events within
//! `BURST_WINDOW` (of at least `MIN_BURST` endpoints), that would withdraw more than
//! `withdraw_guard` of one cluster's endpoints at once is not applied. It is logged, shown in the cluster's status, and
//! after `confirm_after` a fresh list decides: that list is applied, whether it confirms
//! the loss or shows the endpoints back. While a withdrawal is held, watch events that
//! withdraw nothing are applied as usual and those that withdraw wait for that list. A
//! newer relist from the watcher replaces a held withdrawal.
//!
//! Owns: the held withdrawal, the burst window and the confirmation timer. Never
//! applies held objects: only a list fetched after `confirm_after` is applied. Counting
//! what a change withdraws is the Index's (`Index::relist_withdrawal`,
//! `Index::slice_withdrawal`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::sync::Desired;
use crate::sync::audit::now_ms;
use podgate_core::index::{Changes, Index, Kind, Object, Prepared, Withdrawal};
use podgate_core::model::ClusterName;

use super::status::{GuardedRelist, StatusCell};

/// How long to wait before trying a failed confirmation list again, at most.
const RETRY: Duration = Duration::from_secs(5);

/// Withdrawals by watch events this close together count as one burst.
pub(crate) const BURST_WINDOW: Duration = Duration::from_secs(10);

/// A burst withdrawing fewer endpoints than this is never held. Watch events are the
/// API server's own word (unlike a possibly partial relist), and a small app scaled to
/// zero in a small cluster must fail over at once, not after `confirm_after`.
pub(crate) const MIN_BURST: usize = 10;

/// Endpoints withdrawn by watch events since `started`, of `base` at that time.
#[derive(Clone, Copy, Debug)]
struct Burst {
    started: Instant,
    base: usize,
    withdrawn: usize,
}

#[derive(Debug, Default)]
struct State {
    /// The confirmation in progress, with its generation; `None` when nothing is held.
    held: Option<(u64, AbortHandle)>,
    generation: u64,
    burst: Option<Burst>,
}

/// The guard of one cluster's EndpointSlice watcher.
pub(crate) struct RelistGuard {
    api: Api<EndpointSlice>,
    params: ListParams,
    fraction: f64,
    confirm_after: Duration,
    cluster: ClusterName,
    desired: Arc<Desired>,
    status: StatusCell,
    state: Arc<Mutex<State>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RelistGuard {
    /// The guard of `cluster`'s EndpointSlice watcher; lists the way it watches.
    pub(crate) fn new(
        client: &kube::Client,
        options: &super::WatchOptions,
        cluster: ClusterName,
        desired: Arc<Desired>,
        status: StatusCell,
    ) -> Self {
        Self {
            api: Api::all(client.clone()),
            params: ListParams::default().labels(podgate_core::index::SERVICE_NAME_LABEL),
            fraction: options.withdraw_guard,
            confirm_after: options.confirm_after,
            cluster,
            desired,
            status,
            state: Arc::default(),
        }
    }

    /// A completed relist: applied at once (the Index swaps atomically), or held when
    /// it would withdraw too much. Replaces any withdrawal held before.
    pub(crate) fn relist(&self, objects: Vec<Prepared>) -> Changes {
        self.cancel();
        let cause = format!(
            "{}: EndpointSlice relist ({} objects)",
            self.cluster,
            objects.len()
        );
        let mut held = None;
        let changes = self.desired.mutate(&cause, |i| {
            let w = i.relist_withdrawal_prepared(&self.cluster, &objects);
            if w.exceeds(self.fraction) {
                held = Some(w);
                return Changes::default();
            }
            i.reset_prepared(&self.cluster, Kind::EndpointSlice, objects)
        });
        match held {
            Some(w) => self.hold(w, "relist"),
            None => self.status.clear_guarded("EndpointSlice"),
        }
        changes
    }

    /// Whether a watch event on the slice `namespace/name` (`new`: its new version,
    /// `None`: deleted) may be applied now. Call under the Index lock, right before
    /// applying it, so that the count and the change agree.
    pub(crate) fn admit(
        &self,
        index: &mut Index,
        namespace: &str,
        name: &str,
        new: Option<&Object>,
    ) -> bool {
        let w = index.slice_withdrawal(&self.cluster, namespace, name, new);
        if w.withdrawn == 0 {
            return true;
        }
        let mut state = lock(&self.state);
        if state.held.is_some() {
            // The confirming list will carry this change.
            return false;
        }
        let now = Instant::now();
        let mut burst = match state.burst {
            Some(b) if now.duration_since(b.started) < BURST_WINDOW => b,
            _ => Burst {
                started: now,
                base: w.before,
                withdrawn: 0,
            },
        };
        burst.withdrawn += w.withdrawn;
        let total = Withdrawal {
            before: burst.base,
            withdrawn: burst.withdrawn,
        };
        if total.withdrawn >= MIN_BURST && total.exceeds(self.fraction) {
            state.burst = None;
            drop(state);
            self.hold(total, "burst of watch events");
            return false;
        }
        state.burst = Some(burst);
        true
    }

    /// Holds a withdrawal: logs it, shows it, and starts the confirmation.
    fn hold(&self, w: Withdrawal, what: &str) {
        tracing::warn!(
            cluster = %self.cluster,
            what,
            before = w.before,
            withdrawn = w.withdrawn,
            confirm_after_ms = self.confirm_after.as_millis(),
            "would withdraw too many endpoints at once; held until a fresh list confirms it"
        );
        self.status.set_guarded(Some(GuardedRelist {
            kind: "EndpointSlice",
            before: w.before,
            withdrawn: w.withdrawn,
            since_ms: now_ms(),
            confirm_after_ms: u64::try_from(self.confirm_after.as_millis()).unwrap_or(u64::MAX),
        }));
        let mut state = lock(&self.state);
        state.generation += 1;
        let confirmation = Confirmation {
            api: self.api.clone(),
            params: self.params.clone(),
            confirm_after: self.confirm_after,
            cluster: self.cluster.clone(),
            fraction: self.fraction,
            desired: self.desired.clone(),
            status: self.status.clone(),
            state: self.state.clone(),
            generation: state.generation,
        };
        let task = tokio::spawn(confirmation.run(w));
        let generation = state.generation;
        if let Some((_, old)) = state.held.replace((generation, task.abort_handle())) {
            old.abort();
        }
    }

    fn cancel(&self) {
        let mut state = lock(&self.state);
        if let Some((_, task)) = state.held.take() {
            task.abort();
        }
        state.burst = None;
    }
}

impl Drop for RelistGuard {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// One confirmation: wait, list afresh (retrying while listing fails), apply the list.
struct Confirmation {
    api: Api<EndpointSlice>,
    params: ListParams,
    confirm_after: Duration,
    cluster: ClusterName,
    fraction: f64,
    desired: Arc<Desired>,
    status: StatusCell,
    state: Arc<Mutex<State>>,
    generation: u64,
}

impl Confirmation {
    async fn run(self, held: Withdrawal) {
        let cluster = &self.cluster;
        tokio::time::sleep(self.confirm_after).await;
        let list = loop {
            match self.api.list(&self.params).await {
                Ok(list) => break list,
                Err(e) => {
                    tracing::warn!(%cluster, error = %e, "cannot list to confirm a held withdrawal; retrying");
                    tokio::time::sleep(self.confirm_after.min(RETRY)).await;
                }
            }
        };
        let objects: Vec<Object> = list.items.into_iter().map(Object::from).collect();
        let cause = format!(
            "{cluster}: EndpointSlice list confirming a held withdrawal ({} objects)",
            objects.len()
        );
        let mut now = Withdrawal::default();
        let mut superseded = false;
        let changes = self.desired.mutate(&cause, |i| {
            // Only the newest confirmation may apply, and it ends the hold in the same
            // critical section, so no withdrawing event slips between.
            let mut state = lock(&self.state);
            if state.held.as_ref().map(|(g, _)| *g) != Some(self.generation) {
                superseded = true;
                return Changes::default();
            }
            state.held = None;
            // Cleared before the change is visible, so no reader sees it applied and
            // still held.
            self.status.clear_guarded("EndpointSlice");
            now = i.relist_withdrawal(cluster, &objects);
            i.reset(cluster, Kind::EndpointSlice, &objects)
        });
        if superseded {
            return;
        }
        if now.exceeds(self.fraction) {
            tracing::warn!(%cluster, before = now.before, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list confirms the withdrawal; applied");
        } else {
            tracing::info!(%cluster, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list shows the endpoints back; held withdrawal discarded");
        }
    }
}
