//! Stale clusters with a `stale_ttl`: after a cluster has been stale that long its
//! endpoints are withdrawn (`Index::set_cluster_expired`) and it shows as `expired`.
//! While expired it is probed with a full EndpointSlice list; the first list that
//! succeeds is applied and brings its endpoints back in the same step, and the cluster
//! is synced again. (Stale → synced without expiry is the liveness probe's, in
//! `cluster/mod.rs`.)
//!
//! Owns: the expiry timer and the probe. Never withdraws anything without a `stale_ttl`
//! (the default keeps last-known endpoints forever), and never on a failed list.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::hub::{Cause, Desired};
use podgate_core::index::{Input, Kind, Object, SERVICE_NAME_LABEL};
use podgate_core::model::ClusterName;

use super::status::{ClusterState, StatusCell};

/// Watches one cluster's status until the task is dropped; tokio time throughout.
pub(crate) async fn watch_stale(
    cluster: ClusterName,
    client: Client,
    desired: Arc<Desired>,
    status: StatusCell,
    stale_ttl: Duration,
) {
    let api: Api<EndpointSlice> = Api::all(client);
    let params = ListParams::default().labels(SERVICE_NAME_LABEL);
    let tick = (stale_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut stale_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let state = status.get().state;
        let expired = desired.read(|i| i.cluster_expired(&cluster));
        if state == ClusterState::Stale {
            let since = *stale_since.get_or_insert_with(Instant::now);
            if !expired && since.elapsed() >= stale_ttl {
                let cause = Cause::StaleTooLong {
                    cluster: cluster.clone(),
                    stale_ttl_ms: stale_ttl.as_millis(),
                };
                let expire = Input::ClusterExpired {
                    cluster: cluster.clone(),
                    expired: true,
                };
                let changes = desired.apply(&cause, expire);
                status.expired();
                tracing::warn!(%cluster, stale_ttl_ms = stale_ttl.as_millis(), changed_upstreams = changes.upstreams.len(), "stale too long; endpoints withdrawn");
                continue;
            }
        } else if state != ClusterState::Expired {
            stale_since = None;
        }
        if !expired {
            continue;
        }
        let Ok(list) = api.list(&params).await else {
            continue;
        };
        let objects: Vec<Object> = list.items.into_iter().map(Object::from).collect();
        let count = objects.len();
        let cause = Cause::RelistedAfterExpiry {
            cluster: cluster.clone(),
            objects: count,
        };
        let relist = Input::Reset {
            cluster: cluster.clone(),
            kind: Kind::EndpointSlice,
            objects,
        };
        let restore = Input::ClusterExpired {
            cluster: cluster.clone(),
            expired: false,
        };
        let changes = desired.apply_all(&cause, [relist, restore]);
        tracing::info!(%cluster, objects = count, changed_upstreams = changes.upstreams.len(), "reachable again; endpoints restored");
        status.recovered();
        stale_since = None;
    }
}
