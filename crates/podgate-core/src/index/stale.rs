//! Stale clusters seen from the Index: an expired cluster's endpoints are withdrawn
//! (its records are kept, so they return the moment it is un-expired), and the size of
//! the withdrawal a relist would cause, for the floor guard.
//!
//! Owns: the `expired` flag's effect and the withdrawal count. Pure: deciding *when* a
//! cluster expires or a relist is confirmed belongs to the caller (`cluster::stale`,
//! `cluster::guard`). Never changes a record here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::model::{ClusterName, EndpointState};

use super::intern::Interner;
use super::prepared::{Prepared, Record};
use super::records::SliceRecord;
use super::store::ClusterStore;
use super::{Changes, Dirty, Index, Kind, Object, translate};

/// How many of one cluster's endpoints a relist of its EndpointSlices would withdraw.
/// An endpoint is `(namespace, service, address)`, Active or Draining.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Withdrawal {
    /// Endpoints the cluster has now.
    pub before: usize,
    /// Of those, how many the relist does not have.
    pub withdrawn: usize,
}

impl Withdrawal {
    /// Whether more than `fraction` (0.0–1.0) of the endpoints would go at once. A
    /// fraction of 1.0 or more never trips.
    pub fn exceeds(&self, fraction: f64) -> bool {
        if self.withdrawn == 0 || fraction >= 1.0 {
            return false;
        }
        // Counts are far below 2^52: the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let share = self.withdrawn as f64 / self.before as f64;
        share > fraction
    }
}

type EndpointId = (Arc<str>, Arc<str>, IpAddr);

/// What one watch event on an EndpointSlice changes, as the floor guard counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SliceChange {
    /// The cluster's Active and Draining endpoints before the event (over all slices).
    pub before: usize,
    /// Endpoints the event takes away that no other slice of the service keeps.
    pub withdrawn: usize,
    /// Endpoints the event brings that no other slice of the service had.
    pub added: usize,
}

fn endpoint_ids<'a>(
    namespace: &'a Arc<str>,
    slice: &'a SliceRecord,
) -> impl Iterator<Item = EndpointId> + 'a {
    slice
        .endpoints
        .iter()
        .filter(|e| matches!(e.state, EndpointState::Active | EndpointState::Draining))
        .map(move |e| (namespace.clone(), slice.service.clone(), e.address))
}

/// Every endpoint of one cluster's slices (Active or Draining), as counted by the guard.
fn cluster_endpoint_ids(store: &ClusterStore) -> BTreeSet<EndpointId> {
    store
        .slices
        .iter()
        .flat_map(|((ns, _), record)| endpoint_ids(ns, record))
        .collect()
}

impl Index {
    /// Withdraws (`true`) or restores (`false`) every endpoint of `cluster`, keeping its
    /// records. Idempotent.
    pub(super) fn set_cluster_expired(&mut self, cluster: &ClusterName, expired: bool) -> Changes {
        let c = self.cluster_index(cluster);
        if self.clusters[c].expired == expired {
            return Changes::default();
        }
        self.clusters[c].expired = expired;
        let dirty = Dirty {
            upstreams: self.upstream_refs.keys().cloned().collect(),
            ..Dirty::default()
        };
        self.settle(dirty)
    }

    /// Whether `cluster`'s endpoints are withdrawn because it was stale too long.
    pub fn cluster_expired(&self, cluster: &ClusterName) -> bool {
        self.clusters
            .iter()
            .any(|c| c.name == *cluster && c.expired)
    }

    /// What `reset(cluster, EndpointSlice, objects)` would withdraw. Changes nothing.
    pub fn relist_withdrawal(&mut self, cluster: &ClusterName, objects: &[Object]) -> Withdrawal {
        let prepared: Vec<Prepared> = objects
            .iter()
            .filter(|o| o.kind() == Kind::EndpointSlice)
            .filter_map(|o| self.prepare(o))
            .collect();
        self.relist_withdrawal_prepared(cluster, &prepared)
    }

    /// [`Self::relist_withdrawal`] for objects already prepared.
    pub fn relist_withdrawal_prepared(
        &self,
        cluster: &ClusterName,
        objects: &[Prepared],
    ) -> Withdrawal {
        let Some(c) = self.clusters.iter().position(|c| c.name == *cluster) else {
            return Withdrawal::default();
        };
        let mut after: BTreeSet<EndpointId> = BTreeSet::new();
        for object in objects {
            if let Some(Record::Slice(record)) = &object.record {
                after.extend(endpoint_ids(&object.key.0, record));
            }
        }
        let before = cluster_endpoint_ids(&self.clusters[c]);
        Withdrawal {
            before: before.len(),
            withdrawn: before.difference(&after).count(),
        }
    }

    /// What `set_routable(cluster, Some(nets))` would withdraw: the endpoints of
    /// `cluster` registered now that would fall outside `nets`. Changes nothing.
    pub fn routable_withdrawal(&self, cluster: &ClusterName, nets: &[ipnet::IpNet]) -> Withdrawal {
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return Withdrawal::default();
        };
        let mut now = cluster_endpoint_ids(store);
        now.retain(|(_, _, address)| store.reach.routable(*address));
        let withdrawn = now
            .iter()
            .filter(|(_, _, address)| !nets.iter().any(|n| n.contains(address)))
            .count();
        Withdrawal {
            before: now.len(),
            withdrawn,
        }
    }

    /// What one watch event on the EndpointSlice `namespace/name` of `cluster` would
    /// withdraw: `new` is its new version, `None` for a delete. An address still in
    /// another slice of the same service is not withdrawn. Nothing withdrawn →
    /// `Withdrawal::default()` (the cluster is not counted). Changes nothing.
    pub fn slice_withdrawal(
        &self,
        cluster: &ClusterName,
        namespace: &str,
        name: &str,
        new: Option<&Object>,
    ) -> Withdrawal {
        let change = self.slice_change(cluster, namespace, name, new);
        if change.withdrawn == 0 {
            return Withdrawal::default();
        }
        Withdrawal {
            before: change.before,
            withdrawn: change.withdrawn,
        }
    }

    /// What one watch event on the EndpointSlice `namespace/name` of `cluster` would
    /// withdraw and add (see [`SliceChange`]). Costs the endpoints of the slice's
    /// service, never a pass over the cluster. Changes nothing.
    pub fn slice_change(
        &self,
        cluster: &ClusterName,
        namespace: &str,
        name: &str,
        new: Option<&Object>,
    ) -> SliceChange {
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return SliceChange::default();
        };
        let key: (Arc<str>, Arc<str>) = (Arc::from(namespace), Arc::from(name));
        let old = store.slices.get(&key);
        // A scratch interner: counting must not change the Index.
        let new = match new {
            Some(Object::EndpointSlice(slice)) => {
                translate::endpoint_slice(slice, &mut Interner::default())
            }
            _ => None,
        };
        let ids = |record: Option<&SliceRecord>| -> BTreeSet<EndpointId> {
            record
                .map(|r| endpoint_ids(&key.0, r).collect())
                .unwrap_or_default()
        };
        let (old_ids, new_ids) = (ids(old), ids(new.as_ref()));
        // Endpoints of the service's other slices, looked at only when needed.
        let others = |service: &Arc<str>| -> BTreeSet<EndpointId> {
            let service = (key.0.clone(), service.clone());
            store
                .slices_by_service
                .get(&service)
                .into_iter()
                .flatten()
                .filter(|other| **other != key.1)
                .filter_map(|other| store.slices.get(&(key.0.clone(), other.clone())))
                .flat_map(|record| endpoint_ids(&key.0, record))
                .collect()
        };
        let gone: Vec<&EndpointId> = old_ids.difference(&new_ids).collect();
        let withdrawn = match (gone.is_empty(), old) {
            (false, Some(old)) => {
                let kept = others(&old.service);
                gone.iter().filter(|id| !kept.contains(**id)).count()
            }
            _ => 0,
        };
        let came: Vec<&EndpointId> = new_ids.difference(&old_ids).collect();
        let added = match (came.is_empty(), &new) {
            (false, Some(new)) => {
                let had = others(&new.service);
                came.iter().filter(|id| !had.contains(**id)).count()
            }
            _ => 0,
        };
        SliceChange {
            before: store.guarded_endpoints,
            withdrawn,
            added,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Withdrawal;

    #[test]
    fn exceeds_is_strictly_more_than_the_fraction() {
        let w = |before, withdrawn| Withdrawal { before, withdrawn };
        assert!(!w(10, 5).exceeds(0.5));
        assert!(w(10, 6).exceeds(0.5));
        assert!(w(10, 8).exceeds(0.5));
        assert!(!w(10, 0).exceeds(0.5));
        assert!(!w(0, 0).exceeds(0.0));
        assert!(!w(10, 10).exceeds(1.0));
        assert!(w(1, 1).exceeds(0.5));
    }
}
