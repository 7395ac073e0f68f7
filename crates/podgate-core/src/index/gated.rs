//! Pods held back only by podgate's readiness gate (`podgate.io/lb-registered`).
//!
//! A pod that carries the gate is not Ready until podgate says every LB target holds
//! it, so its EndpointSlice endpoint stays `ready: false` — and an LB that waited for
//! `ready` would never register it. The pod watcher therefore reports the gated pods
//! whose containers are ready (`Input::GatedPods`, `Input::GatedPod`); their
//! not-ready, not-terminating endpoints ("starting", kept apart in each slice record)
//! count as Active. The gate's own condition is never an input: it is a consequence of
//! the LB targets' acknowledgements (`src/gate`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::records::{Map, ObjectKey, SliceRecord};
use super::{Changes, Dirty, Index};
use crate::model::{ClusterName, EndpointState, UpstreamKey};

/// Where a gated pod's address stands in the Index (for the gate writer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatedLookup {
    /// Some EndpointSlice lists the address as not ready (yet).
    pub listed: bool,
    /// One of those slices' Services is the backend of one of podgate's routes.
    pub routed: bool,
    /// The upstreams that hold the address as an Active endpoint of the cluster.
    pub upstreams: Vec<UpstreamKey>,
}

/// One cluster's gated pods and where their starting endpoints are.
#[derive(Debug, Default)]
pub(crate) struct GatedPods {
    /// Gated pods whose containers are ready, by address.
    ready: HashSet<IpAddr, foldhash::fast::RandomState>,
    /// Address → the services of the slices that list it as starting (once per slice).
    starting_in: Map<IpAddr, Vec<ObjectKey>>,
}

impl GatedPods {
    /// Whether a starting endpoint at `address` counts as Active.
    pub(crate) fn counts(&self, address: IpAddr) -> bool {
        self.ready.contains(&address)
    }

    /// Keeps `starting_in` in step with a slice replaced by another (either may be none).
    pub(crate) fn relink(
        &mut self,
        namespace: &std::sync::Arc<str>,
        old: Option<&SliceRecord>,
        new: Option<&SliceRecord>,
    ) {
        if let Some(record) = old {
            let service = (namespace.clone(), record.service.clone());
            for ep in &record.starting {
                if let Some(services) = self.starting_in.get_mut(&ep.address) {
                    if let Some(i) = services.iter().position(|s| *s == service) {
                        services.swap_remove(i);
                    }
                    if services.is_empty() {
                        self.starting_in.remove(&ep.address);
                    }
                }
            }
        }
        if let Some(record) = new {
            let service = (namespace.clone(), record.service.clone());
            for ep in &record.starting {
                self.starting_in
                    .entry(ep.address)
                    .or_default()
                    .push(service.clone());
            }
        }
    }

    fn services_of(&self, address: IpAddr) -> impl Iterator<Item = &ObjectKey> {
        self.starting_in.get(&address).into_iter().flatten()
    }
}

impl Index {
    /// One gated pod's containers became ready (`ready`) or stopped being ready, or the
    /// pod went away or started terminating (`!ready`).
    pub(super) fn set_gated_pod(
        &mut self,
        cluster: &ClusterName,
        address: IpAddr,
        ready: bool,
    ) -> Changes {
        let c = self.cluster_index(cluster);
        let gated = &mut self.clusters[c].gated;
        let changed = if ready {
            gated.ready.insert(address)
        } else {
            gated.ready.remove(&address)
        };
        if !changed {
            return Changes::default();
        }
        let mut dirty = Dirty::default();
        self.dirty_for(c, address, &mut dirty);
        self.settle(dirty)
    }

    /// Replaces every gated pod of `cluster` whose containers are ready (a relist).
    pub(super) fn set_gated_pods(&mut self, cluster: &ClusterName, ready: Vec<IpAddr>) -> Changes {
        let c = self.cluster_index(cluster);
        let new: HashSet<IpAddr, foldhash::fast::RandomState> = ready.into_iter().collect();
        let old = std::mem::take(&mut self.clusters[c].gated.ready);
        let mut dirty = Dirty::default();
        for address in old.symmetric_difference(&new) {
            self.dirty_for(c, *address, &mut dirty);
        }
        self.clusters[c].gated.ready = new;
        self.settle(dirty)
    }

    fn dirty_for(&self, c: usize, address: IpAddr, dirty: &mut Dirty) {
        for service in self.clusters[c].gated.services_of(address) {
            if let Some(ups) = self.service_upstreams.get(service) {
                dirty.upstreams.extend(ups.iter().cloned());
            }
        }
    }

    /// Which upstreams hold `address` of `cluster` (a gated pod's) as Active.
    pub fn gated_lookup(&self, cluster: &ClusterName, address: IpAddr) -> GatedLookup {
        let mut lookup = GatedLookup::default();
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return lookup;
        };
        for service in store.gated.services_of(address) {
            lookup.listed = true;
            for key in self.service_upstreams.get(service).into_iter().flatten() {
                lookup.routed = true;
                let holds = self.upstream(key).is_some_and(|u| {
                    u.endpoints.iter().any(|e| {
                        e.address == address
                            && e.cluster == *cluster
                            && e.state == EndpointState::Active
                    })
                });
                if holds && !lookup.upstreams.contains(key) {
                    lookup.upstreams.push(key.clone());
                }
            }
        }
        lookup
    }

    /// Whether `address` in `cluster` is a gated pod whose containers are ready.
    pub fn is_gated_ready(&self, cluster: &ClusterName, address: IpAddr) -> bool {
        self.clusters
            .iter()
            .find(|c| c.name == *cluster)
            .is_some_and(|c| c.gated.counts(address))
    }
}
