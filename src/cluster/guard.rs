//! The floor guard: a relist of EndpointSlices that would withdraw more than
//! `withdraw_guard` of one cluster's endpoints at once is not applied. It is logged,
//! shown in the cluster's status, and after `confirm_after` a fresh list decides: that
//! list is applied, whether it confirms the loss or shows the endpoints back. A
//! newer relist from the watcher replaces a held one.
//!
//! Owns: the held relist and its confirmation timer. Never applies a held relist's
//! objects: only a list fetched after `confirm_after` is applied. Counting what a relist
//! withdraws is the Index's (`Index::relist_withdrawal`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use tokio::task::AbortHandle;

use crate::index::{Changes, Kind, Object, Withdrawal};
use crate::model::ClusterName;
use crate::sync::Desired;
use crate::sync::audit::now_ms;

use super::status::{GuardedRelist, StatusCell};

/// How long to wait before trying a failed confirmation list again, at most.
const RETRY: Duration = Duration::from_secs(5);

/// The guard of one cluster's EndpointSlice watcher.
pub(crate) struct RelistGuard {
    api: Api<EndpointSlice>,
    params: ListParams,
    fraction: f64,
    confirm_after: Duration,
    cluster: ClusterName,
    desired: Arc<Desired>,
    status: StatusCell,
    pending: Mutex<Option<AbortHandle>>,
}

impl RelistGuard {
    pub(crate) fn new(
        api: Api<EndpointSlice>,
        params: ListParams,
        (fraction, confirm_after): (f64, Duration),
        cluster: ClusterName,
        desired: Arc<Desired>,
        status: StatusCell,
    ) -> Self {
        Self {
            api,
            params,
            fraction,
            confirm_after,
            cluster,
            desired,
            status,
            pending: Mutex::new(None),
        }
    }

    /// A completed relist: applied at once (the Index swaps atomically), or held when
    /// it would withdraw too much. Replaces any relist held before.
    pub(crate) fn relist(&self, objects: &[Object]) -> Changes {
        self.cancel();
        let cause = format!(
            "{}: EndpointSlice relist ({} objects)",
            self.cluster,
            objects.len()
        );
        let mut held = None;
        let changes = self.desired.mutate(&cause, |i| {
            let w = i.relist_withdrawal(&self.cluster, objects);
            if w.exceeds(self.fraction) {
                held = Some(w);
                return Changes::default();
            }
            i.reset(&self.cluster, Kind::EndpointSlice, objects)
        });
        let Some(w) = held else {
            self.status.set_guarded(None);
            return changes;
        };
        tracing::warn!(
            cluster = %self.cluster,
            before = w.before,
            withdrawn = w.withdrawn,
            confirm_after_ms = self.confirm_after.as_millis(),
            "relist would withdraw too many endpoints at once; held until a fresh list confirms it"
        );
        self.status.set_guarded(Some(GuardedRelist {
            kind: Kind::EndpointSlice,
            before: w.before,
            withdrawn: w.withdrawn,
            since_ms: now_ms(),
            confirm_after_ms: u64::try_from(self.confirm_after.as_millis()).unwrap_or(u64::MAX),
        }));
        let task = tokio::spawn(confirm(
            self.api.clone(),
            self.params.clone(),
            self.confirm_after,
            (self.cluster.clone(), self.fraction, w),
            self.desired.clone(),
            self.status.clone(),
        ));
        *lock(&self.pending) = Some(task.abort_handle());
        changes
    }

    fn cancel(&self) {
        if let Some(task) = lock(&self.pending).take() {
            task.abort();
        }
    }
}

impl Drop for RelistGuard {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits `confirm_after`, then lists afresh (retrying while the list fails) and applies
/// that list.
async fn confirm(
    api: Api<EndpointSlice>,
    params: ListParams,
    confirm_after: Duration,
    (cluster, fraction, held): (ClusterName, f64, Withdrawal),
    desired: Arc<Desired>,
    status: StatusCell,
) {
    tokio::time::sleep(confirm_after).await;
    let list = loop {
        match api.list(&params).await {
            Ok(list) => break list,
            Err(e) => {
                tracing::warn!(%cluster, error = %e, "cannot list to confirm a held relist; retrying");
                tokio::time::sleep(confirm_after.min(RETRY)).await;
            }
        }
    };
    let objects: Vec<Object> = list.items.into_iter().map(Object::from).collect();
    let cause = format!(
        "{cluster}: EndpointSlice list confirming a held relist ({} objects)",
        objects.len()
    );
    let mut now = Withdrawal::default();
    let changes = desired.mutate(&cause, |i| {
        now = i.relist_withdrawal(&cluster, &objects);
        i.reset(&cluster, Kind::EndpointSlice, &objects)
    });
    if now.exceeds(fraction) {
        tracing::warn!(%cluster, before = now.before, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list confirms the withdrawal; applied");
    } else {
        tracing::info!(%cluster, withdrawn = now.withdrawn, held_withdrawn = held.withdrawn, changed_upstreams = changes.upstreams.len(), "fresh list shows the endpoints back; held relist discarded");
    }
    status.set_guarded(None);
}
