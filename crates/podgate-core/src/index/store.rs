//! One cluster's objects, in compact form, keyed by `(namespace, name)`.

use std::sync::Arc;

use crate::model::ClusterName;

use super::records::{
    ClassRecord, IngressRecord, Map, ObjectKey, SecretRecord, ServiceRecord, SliceRecord,
};

#[derive(Debug)]
pub(crate) struct ClusterStore {
    pub(crate) name: ClusterName,
    /// Configured weight, used when no annotation or run-time override applies.
    pub(crate) weight: u32,
    pub(crate) classes: Map<Arc<str>, ClassRecord>,
    pub(crate) ingresses: Map<ObjectKey, IngressRecord>,
    pub(crate) services: Map<ObjectKey, ServiceRecord>,
    pub(crate) slices: Map<ObjectKey, SliceRecord>,
    /// `(namespace, service)` → names of its slices.
    pub(crate) slices_by_service: Map<ObjectKey, Vec<Arc<str>>>,
    pub(crate) secrets: Map<ObjectKey, SecretRecord>,
    /// Stale for longer than its `stale_ttl`: its endpoints are withdrawn (records kept).
    pub(crate) expired: bool,
    /// Routability guard, target type and Ready nodes.
    pub(crate) reach: super::reach::Reach,
    /// Active and Draining endpoints over all slices (an address in two slices counts
    /// twice): the cluster's size for the floor guard, kept up to date by `put_slice`
    /// so that judging one event costs what the event changed, not the cluster.
    pub(crate) guarded_endpoints: usize,
    /// Pods held back only by podgate's readiness gate (`gated.rs`).
    pub(crate) gated: super::gated::GatedPods,
    /// Gateway API objects and what they resolved to (`gateways.rs`).
    pub(crate) gateway: super::gateways::GatewayObjects,
}

impl ClusterStore {
    pub(crate) fn new(name: ClusterName, weight: u32) -> Self {
        Self {
            name,
            weight,
            classes: Map::default(),
            ingresses: Map::default(),
            services: Map::default(),
            slices: Map::default(),
            slices_by_service: Map::default(),
            secrets: Map::default(),
            expired: false,
            reach: super::reach::Reach::default(),
            guarded_endpoints: 0,
            gated: super::gated::GatedPods::default(),
            gateway: super::gateways::GatewayObjects::default(),
        }
    }

    /// Stores or removes a slice and keeps the by-service index in step. Returns the
    /// services whose endpoints may have changed (old and new owner of the slice).
    pub(crate) fn put_slice(
        &mut self,
        key: &ObjectKey,
        record: Option<SliceRecord>,
    ) -> Vec<ObjectKey> {
        let added = record.as_ref().map_or(0, SliceRecord::guarded);
        let removed = self.slices.get(key).map_or(0, SliceRecord::guarded);
        self.guarded_endpoints = (self.guarded_endpoints + added).saturating_sub(removed);
        self.gated
            .relink(&key.0, self.slices.get(key), record.as_ref());
        let old = match record {
            Some(r) => {
                let service = (key.0.clone(), r.service.clone());
                let old = self.slices.insert(key.clone(), r);
                let names = self.slices_by_service.entry(service.clone()).or_default();
                if !names.contains(&key.1) {
                    names.reserve_exact(1);
                    names.push(key.1.clone());
                }
                let mut touched = vec![service];
                if let Some(o) = &old
                    && o.service != touched[0].1
                {
                    self.unlink_slice(key, &o.service);
                    touched.push((key.0.clone(), o.service.clone()));
                }
                return touched;
            }
            None => self.slices.remove(key),
        };
        match old {
            Some(o) => {
                self.unlink_slice(key, &o.service);
                vec![(key.0.clone(), o.service)]
            }
            None => Vec::new(),
        }
    }

    fn unlink_slice(&mut self, key: &ObjectKey, service: &Arc<str>) {
        let service_key = (key.0.clone(), service.clone());
        if let Some(names) = self.slices_by_service.get_mut(&service_key) {
            names.retain(|n| *n != key.1);
            if names.is_empty() {
                self.slices_by_service.remove(&service_key);
            }
        }
    }

    /// The slices of one service.
    pub(crate) fn slices_of<'a>(
        &'a self,
        service: &'a ObjectKey,
    ) -> impl Iterator<Item = &'a SliceRecord> + 'a {
        let names = self.slices_by_service.get(service);
        names
            .into_iter()
            .flatten()
            .filter_map(move |n| self.slices.get(&(service.0.clone(), n.clone())))
    }

    /// Whether podgate serves the Ingress class this record asks for.
    pub(crate) fn is_ours(
        &self,
        class: &super::records::ClassRequest,
        controller: &str,
        legacy_name: &str,
    ) -> bool {
        use super::records::ClassRequest;
        match class {
            ClassRequest::Named(name) => self
                .classes
                .get(name.as_str())
                .is_some_and(|c| c.controller == controller),
            ClassRequest::Legacy(name) => {
                name == legacy_name
                    || self
                        .classes
                        .get(name.as_str())
                        .is_some_and(|c| c.controller == controller)
            }
            ClassRequest::Default => self
                .classes
                .values()
                .any(|c| c.is_default && c.controller == controller),
        }
    }
}
