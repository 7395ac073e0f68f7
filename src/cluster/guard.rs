//! The floor guard: a relist of EndpointSlices, or a burst of watch events within
//! `BURST_WINDOW` (at least `MIN_BURST` endpoints missing at once, net of those that
//! came meanwhile), that would withdraw more than `withdraw_guard` of one cluster's
//! endpoints at once is not applied. It is logged, shown in the cluster's status, and
//! after `confirm_after` a fresh list decides: that list is applied, whether it confirms
//! the loss or shows the endpoints back. While a withdrawal is held, watch events that
//! withdraw nothing are applied as usual and those that withdraw wait for that list. A
//! newer relist from the watcher replaces a held withdrawal.
//!
//! Owns: the held withdrawal and the confirmation timer. Never applies held objects:
//! only a list fetched after `confirm_after` is applied. Counting what a change
//! withdraws is the Index's (`Index::relist_withdrawal_prepared`,
//! `Index::slice_change`); whether to hold it is `podgate_core::guard`'s.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::hub::{Cause, Desired};
use podgate_core::guard::{FloorGuard, Verdict};
use podgate_core::index::{Changes, Index, Input, Kind, Object, Prepared, Withdrawal};
use podgate_core::model::ClusterName;

use super::status::{GuardedRelist, StatusCell};

/// How long to wait before trying a failed confirmation list again, at most.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct State {
    /// The confirmation in progress, with its generation; `None` when nothing is held.
    held: Option<(u64, AbortHandle)>,
    generation: u64,
    floor: FloorGuard,
}

/// The guard of one cluster's EndpointSlice watcher.
pub(crate) struct RelistGuard {
    api: Api<EndpointSlice>,
    params: ListParams,
    confirm_after: Duration,
    cluster: ClusterName,
    desired: Arc<Desired>,
    status: StatusCell,
    state: Arc<Mutex<State>>,
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
            confirm_after: options.confirm_after,
            cluster,
            desired,
            status,
            state: Arc::new(Mutex::new(State {
                held: None,
                generation: 0,
                floor: FloorGuard::new(options.withdraw_guard),
            })),
        }
    }

    /// A completed relist: applied at once (the Index swaps atomically), or held when
    /// it would withdraw too much. Replaces any withdrawal held before.
    pub(crate) fn relist(&self, objects: Vec<Prepared>) -> Changes {
        self.cancel();
        let cause = Cause::Relist {
            cluster: self.cluster.clone(),
            kind: Kind::EndpointSlice,
            objects: objects.len(),
        };
        let input = Input::ResetPrepared {
            cluster: self.cluster.clone(),
            kind: Kind::EndpointSlice,
            objects,
        };
        let mut held = None;
        let changes = self.desired.apply_if(&cause, input, |i, input| {
            let Input::ResetPrepared { objects, .. } = input else {
                return true;
            };
            let w = i.relist_withdrawal_prepared(&self.cluster, objects);
            match self.state.lock().floor.relist(w) {
                Verdict::Apply => true,
                Verdict::Hold(w) => {
                    held = Some(w);
                    false
                }
            }
        });
        match held {
            Some(w) => self.hold(w, "relist"),
            None => self.status.clear_guarded("EndpointSlice"),
        }
        changes.unwrap_or_default()
    }

    /// Whether a watch event on one of this cluster's EndpointSlices may be applied
    /// now. `Desired::apply_if` calls it under the Index lock, right before applying
    /// it, so that the count and the change agree.
    pub(crate) fn admit(&self, index: &Index, input: &Input) -> bool {
        let change = match input {
            Input::Apply { object, .. } => {
                let meta = object.metadata();
                let (ns, name) = (
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
                index.slice_change(&self.cluster, ns, name, Some(object))
            }
            Input::Delete {
                namespace, name, ..
            } => index.slice_change(&self.cluster, namespace, name, None),
            _ => return true,
        };
        if change.withdrawn == 0 && change.added == 0 {
            return true;
        }
        let mut state = self.state.lock();
        if state.held.is_some() {
            // The confirming list will carry a withdrawal; an addition goes at once.
            return change.withdrawn == 0;
        }
        match state.floor.event(Instant::now().into_std(), change) {
            Verdict::Apply => true,
            Verdict::Hold(missing) => {
                drop(state);
                self.hold(missing, "burst of watch events");
                false
            }
        }
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
        let mut state = self.state.lock();
        state.generation += 1;
        let confirmation = Confirmation {
            api: self.api.clone(),
            params: self.params.clone(),
            confirm_after: self.confirm_after,
            cluster: self.cluster.clone(),
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
        let mut state = self.state.lock();
        if let Some((_, task)) = state.held.take() {
            task.abort();
        }
        state.floor.forget_burst();
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
        let objects: Vec<Prepared> = list
            .items
            .into_iter()
            .filter_map(|s| self.desired.prepare(&Object::from(s)))
            .collect();
        let cause = Cause::Confirmation {
            cluster: cluster.clone(),
            what: "EndpointSlice",
            objects: objects.len(),
        };
        let input = Input::ResetPrepared {
            cluster: cluster.clone(),
            kind: Kind::EndpointSlice,
            objects,
        };
        let mut now = Withdrawal::default();
        let mut confirmed = false;
        let changes = self.desired.apply_if(&cause, input, |i, input| {
            // Only the newest confirmation may apply, and it ends the hold in the same
            // critical section, so no withdrawing event slips between.
            let mut state = self.state.lock();
            if state.held.as_ref().map(|(g, _)| *g) != Some(self.generation) {
                return false;
            }
            state.held = None;
            // Cleared before the change is visible, so no reader sees it applied and
            // still held.
            self.status.clear_guarded("EndpointSlice");
            if let Input::ResetPrepared { objects, .. } = input {
                now = i.relist_withdrawal_prepared(cluster, objects);
                confirmed = state.floor.exceeded(now);
            }
            true
        });
        let Some(changes) = changes else {
            // Superseded by a newer relist or confirmation.
            return;
        };
        if confirmed {
            tracing::warn!(%cluster, before = now.before, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list confirms the withdrawal; applied");
        } else {
            tracing::info!(%cluster, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list shows the endpoints back; held withdrawal discarded");
        }
    }
}
