//! The Index: Kubernetes objects of several clusters → the desired L7 state (route
//! table, upstreams, certificates), with an exact report of what each mutation changed.
//!
//! Owns: every Ingress and EndpointSlice semantic rule, conflict resolution, cluster
//! weights and failover. Pure and synchronous: no tokio, no kube client, no hyper, no
//! I/O, no logging of secret material. Never panics on any input.

mod claims;
mod diagnose;
mod diagnostics;
mod gated;
mod gateways;
mod holds;
mod input;
mod intern;
mod object;
mod prepared;
mod reach;
mod records;
mod routes;
mod snapshot;
mod stale;
mod store;
mod tls_check;
mod translate;
mod upstreams;
mod why;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use claims::RouteScope;
pub use diagnostics::{Diagnostic, Kind, ObjectRef, Report};
pub use gated::GatedLookup;
pub use holds::Hold;
pub use input::Input;
pub use object::{Changes, Object};
pub use prepared::Prepared;
pub use reach::EndpointTarget;
pub use snapshot::{Snapshot, UpstreamMap};
pub use stale::{SliceChange, Withdrawal};
pub use translate::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION, SERVICE_NAME_LABEL};
pub use why::{AddressFinding, LeftOut, UpstreamFate};

use crate::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant, Resolution};
use crate::model::{Certificate, ClusterName, HostPattern, Upstream, UpstreamKey, VirtualHost};

use crate::model::shares::ClusterWeights;
use claims::{IngressClaims, Owner};
use holds::Holds;
use intern::Interner;
use prepared::Record;
use records::{Map, ObjectKey, SecretRecord};
use routes::{Conflict, ScopeClaims};
use store::ClusterStore;

/// What the Index needs to know about podgate's own configuration.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// IngressClass `spec.controller` that podgate serves.
    pub controller_name: String,
    /// Value of the legacy `kubernetes.io/ingress.class` annotation podgate accepts
    /// (besides the names of its own IngressClasses).
    pub legacy_class: String,
    /// Clusters in configuration order, with their weights.
    pub clusters: Vec<(ClusterName, u32)>,
    /// GatewayClass `controllerName` podgate serves.
    pub gateway_controller_name: String,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            controller_name: "podgate.io/ingress-controller".to_owned(),
            legacy_class: "podgate".to_owned(),
            clusters: Vec::new(),
            gateway_controller_name: crate::gateway::DEFAULT_CONTROLLER_NAME.to_owned(),
        }
    }
}

/// `push` without spare capacity: the Index holds many small, long-lived vectors.
trait PushExact<T> {
    fn push_exact(&mut self, item: T);
}

impl<T> PushExact<T> for Vec<T> {
    fn push_exact(&mut self, item: T) {
        self.reserve_exact(1);
        self.push(item);
    }
}

/// Weight of a cluster that appears without being configured.
const DEFAULT_WEIGHT: u32 = 100;

/// Work left to do after the records changed.
#[derive(Default)]
struct Dirty {
    ingresses: BTreeSet<(usize, ObjectKey)>,
    scopes: BTreeSet<RouteScope>,
    upstreams: BTreeSet<UpstreamKey>,
    /// Clusters whose Gateway API objects must be resolved again.
    gateways: BTreeSet<usize>,
    /// A Service or Secret changed: every cluster with Gateway API objects resolves
    /// again (a backendRef or certificateRef may name it, in any cluster).
    gateway_lookups: bool,
    diagnostics: bool,
}

/// See the module documentation.
pub struct Index {
    config: IndexConfig,
    clusters: Vec<ClusterStore>,
    interner: Interner,
    /// What each of podgate's Ingresses claims now, by (cluster index, namespace/name).
    claimed: Map<(usize, ObjectKey), IngressClaims>,
    scopes: Map<RouteScope, ScopeClaims>,
    conflicts: Map<RouteScope, Vec<Conflict>>,
    /// Referencing Ingresses of each upstream, with their weights annotation.
    /// Small sorted vectors, not trees: most upstreams have one or two referrers.
    upstream_refs: Map<UpstreamKey, Vec<(Owner, Option<ClusterWeights>)>>,
    service_upstreams: Map<ObjectKey, Vec<UpstreamKey>>,
    /// `(namespace, secret)` → hosts whose TLS claims name it.
    secret_hosts: Map<ObjectKey, BTreeSet<HostPattern>>,
    /// Run-time per-application weights (`namespace/service`), beating annotations.
    app_weights: Map<ObjectKey, ClusterWeights>,
    // Derived state, shared with snapshots.
    upstreams: UpstreamMap,
    vhosts: imbl::OrdMap<RouteScope, Arc<VirtualHost>>,
    certificates: imbl::OrdMap<String, Certificate>,
    /// How many virtual hosts use each certificate.
    certificate_users: Map<String, usize>,
    generation: u64,
    /// Hold-down (failover damping) state; inert unless enabled.
    holds: Holds,
}

impl Index {
    pub fn new(config: IndexConfig) -> Self {
        let clusters = config
            .clusters
            .iter()
            .map(|(name, weight)| ClusterStore::new(name.clone(), *weight))
            .collect();
        Self {
            config,
            clusters,
            interner: Interner::default(),
            claimed: Map::default(),
            scopes: Map::default(),
            conflicts: Map::default(),
            upstream_refs: Map::default(),
            service_upstreams: Map::default(),
            secret_hosts: Map::default(),
            app_weights: Map::default(),
            upstreams: UpstreamMap::default(),
            vhosts: imbl::OrdMap::new(),
            certificates: imbl::OrdMap::new(),
            certificate_users: Map::default(),
            generation: 0,
            holds: Holds::default(),
        }
    }

    /// Applies one input and reports exactly what it changed: the one way to change
    /// the Index.
    pub fn dispatch(&mut self, input: Input) -> Changes {
        match input {
            Input::Apply { cluster, object } => match self.prepare(&object) {
                Some(prepared) => self.apply_prepared(&cluster, prepared),
                None => Changes::default(),
            },
            Input::Delete {
                cluster,
                kind,
                namespace,
                name,
            } => self.remove(&cluster, kind, &namespace, &name),
            Input::Reset {
                cluster,
                kind,
                objects,
            } => self.reset(&cluster, kind, &objects),
            Input::ResetPrepared {
                cluster,
                kind,
                objects,
            } => self.reset_prepared(&cluster, kind, objects),
            Input::HoldDown(enabled) => self.set_hold_down(enabled),
            Input::HoldReleased(hold) => self.release_hold(&hold),
            Input::ClusterExpired { cluster, expired } => {
                self.set_cluster_expired(&cluster, expired)
            }
            Input::Routable { cluster, routable } => self.set_routable(&cluster, routable),
            Input::Target { cluster, target } => self.set_target(&cluster, target),
            Input::Nodes { cluster, nodes } => self.set_nodes(&cluster, &nodes),
            Input::ClusterWeight { cluster, weight } => self.set_cluster_weight(&cluster, weight),
            Input::AppWeights {
                namespace,
                service,
                weights,
            } => self.set_app_weights(&namespace, &service, weights),
            Input::GatedPod {
                cluster,
                address,
                ready,
            } => self.set_gated_pod(&cluster, address, ready),
            Input::GatedPods { cluster, ready } => self.set_gated_pods(&cluster, ready),
        }
    }

    /// Shorthand for [`Input::Apply`]: adds or replaces one object seen in `cluster`.
    pub fn apply(&mut self, cluster: &ClusterName, object: impl Into<Object>) -> Changes {
        self.dispatch(Input::Apply {
            cluster: cluster.clone(),
            object: object.into(),
        })
    }

    /// Translates an object into the compact record the Index keeps, without applying
    /// it (`&mut` only for the string interner); `None` for an object without a name.
    pub fn prepare(&mut self, object: &Object) -> Option<Prepared> {
        let key = translate::key_of(object.metadata(), &mut self.interner)?;
        let record = match object {
            Object::Ingress(i) => Some(Record::Ingress(translate::ingress(i))),
            Object::IngressClass(c) => Some(Record::Class(translate::ingress_class(c))),
            Object::Service(s) => Some(Record::Service(translate::service(s, &mut self.interner))),
            Object::EndpointSlice(s) => {
                translate::endpoint_slice(s, &mut self.interner).map(Record::Slice)
            }
            Object::Secret(s) => Some(Record::Secret(translate::secret(s))),
            Object::GatewayClass(o) => Some(Record::GatewayClass(Arc::new(GatewayClass {
                metadata: translate::gateway_meta(&o.metadata),
                spec: o.spec.clone(),
            }))),
            Object::Gateway(o) => Some(Record::Gateway(Arc::new(Gateway {
                metadata: translate::gateway_meta(&o.metadata),
                spec: o.spec.clone(),
            }))),
            Object::HttpRoute(o) => Some(Record::HttpRoute(Arc::new(HttpRoute {
                metadata: translate::gateway_meta(&o.metadata),
                spec: o.spec.clone(),
            }))),
            Object::ReferenceGrant(o) => Some(Record::ReferenceGrant(Arc::new(ReferenceGrant {
                metadata: translate::gateway_meta(&o.metadata),
                spec: o.spec.clone(),
            }))),
            Object::Namespace(o) => Some(Record::Namespace(Arc::new(
                o.metadata.labels.clone().unwrap_or_default(),
            ))),
        };
        Some(Prepared {
            kind: object.kind(),
            key,
            record,
        })
    }

    /// [`Input::Apply`] for an object already prepared.
    fn apply_prepared(&mut self, cluster: &ClusterName, prepared: Prepared) -> Changes {
        let c = self.cluster_index(cluster);
        let mut dirty = Dirty::default();
        self.put(c, &prepared.key, prepared.record, prepared.kind, &mut dirty);
        self.settle(dirty)
    }

    /// Shorthand for [`Input::Delete`]: removes one object. Removing something unknown
    /// changes nothing.
    pub fn delete(
        &mut self,
        cluster: &ClusterName,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Changes {
        self.dispatch(Input::Delete {
            cluster: cluster.clone(),
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn remove(
        &mut self,
        cluster: &ClusterName,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Changes {
        let c = self.cluster_index(cluster);
        let key: ObjectKey = (Arc::from(namespace), Arc::from(name));
        let mut dirty = Dirty::default();
        self.put(c, &key, None, kind, &mut dirty);
        self.settle(dirty)
    }

    /// [`Input::Reset`] without copying the objects: replaces all objects of `kind` in
    /// `cluster` with `objects` (a completed relist), atomically: the result is the same as deleting what is gone and applying the
    /// rest, and the same objects report no change at all.
    pub fn reset(&mut self, cluster: &ClusterName, kind: Kind, objects: &[Object]) -> Changes {
        let prepared = objects
            .iter()
            .filter(|o| o.kind() == kind)
            .filter_map(|o| self.prepare(o))
            .collect();
        self.reset_prepared(cluster, kind, prepared)
    }

    /// [`Input::ResetPrepared`]: those of another kind are skipped.
    fn reset_prepared(
        &mut self,
        cluster: &ClusterName,
        kind: Kind,
        objects: Vec<Prepared>,
    ) -> Changes {
        let c = self.cluster_index(cluster);
        let mut dirty = Dirty::default();
        let mut seen: BTreeSet<ObjectKey> = BTreeSet::new();
        for object in objects.into_iter().filter(|o| o.kind == kind) {
            self.put(c, &object.key, object.record, kind, &mut dirty);
            seen.insert(object.key);
        }
        for key in self.keys_of(c, kind) {
            if !seen.contains(&key) {
                self.put(c, &key, None, kind, &mut dirty);
            }
        }
        self.settle(dirty)
    }

    /// Changes a cluster's weight at run time (all applications without an override).
    fn set_cluster_weight(&mut self, cluster: &ClusterName, weight: u32) -> Changes {
        let c = self.cluster_index(cluster);
        if self.clusters[c].weight == weight {
            return Changes::default();
        }
        self.clusters[c].weight = weight;
        let dirty = Dirty {
            upstreams: self.upstream_refs.keys().cloned().collect(),
            ..Dirty::default()
        };
        self.settle(dirty)
    }

    /// Sets or clears run-time weights for one application (`namespace/service`); they
    /// beat annotations and configuration.
    fn set_app_weights(
        &mut self,
        namespace: &str,
        service: &str,
        weights: Option<ClusterWeights>,
    ) -> Changes {
        let key: ObjectKey = (Arc::from(namespace), Arc::from(service));
        let changed = match weights {
            Some(w) => self.app_weights.insert(key.clone(), w.clone()) != Some(w),
            None => self.app_weights.remove(&key).is_some(),
        };
        if !changed {
            return Changes::default();
        }
        let dirty = Dirty {
            upstreams: self
                .service_upstreams
                .get(&key)
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            ..Dirty::default()
        };
        self.settle(dirty)
    }

    /// A consistent, cheap (reference-counted) copy of the desired state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            generation: self.generation,
            upstreams: self.upstreams.clone(),
            vhosts: self.vhosts.clone(),
            certificates: self.certificates.clone(),
        }
    }

    /// The desired value of one upstream.
    pub fn upstream(&self, key: &UpstreamKey) -> Option<Arc<Upstream>> {
        self.upstreams.get(key).cloned()
    }

    /// How many objects of each kind the Index holds for `cluster` (EndpointSlices
    /// counted are those podgate keeps: FQDN slices and slices without a Service are not).
    pub fn object_counts(&self, cluster: &ClusterName) -> std::collections::BTreeMap<Kind, usize> {
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return std::collections::BTreeMap::new();
        };
        let mut counts = std::collections::BTreeMap::from([
            (Kind::Ingress, store.ingresses.len()),
            (Kind::IngressClass, store.classes.len()),
            (Kind::Service, store.services.len()),
            (Kind::EndpointSlice, store.slices.len()),
            (Kind::Secret, store.secrets.len()),
        ]);
        // The Gateway API kinds where the cluster has any (most have none).
        let g = &store.gateway;
        counts.extend(
            [
                (Kind::GatewayClass, g.classes.len()),
                (Kind::Gateway, g.gateways.len()),
                (Kind::HTTPRoute, g.routes.len()),
                (Kind::ReferenceGrant, g.grants.len()),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0),
        );
        counts
    }

    /// Whether podgate serves this Ingress (its class is podgate's).
    pub fn serves(&self, cluster: &ClusterName, namespace: &str, name: &str) -> bool {
        let Some(c) = self.clusters.iter().position(|c| c.name == *cluster) else {
            return false;
        };
        let key: ObjectKey = (Arc::from(namespace), Arc::from(name));
        self.claimed.contains_key(&(c, key))
    }

    /// The upstreams one Ingress of `cluster` names (its rules and default backend),
    /// whether or not it is podgate's; empty for an unknown Ingress.
    pub fn backends_of(
        &self,
        cluster: &ClusterName,
        namespace: &str,
        name: &str,
    ) -> Vec<UpstreamKey> {
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return Vec::new();
        };
        let key: ObjectKey = (Arc::from(namespace), Arc::from(name));
        let Some(ingress) = store.ingresses.get(&key) else {
            return Vec::new();
        };
        let mut out: Vec<UpstreamKey> = ingress.rules.iter().map(|r| r.upstream.clone()).collect();
        out.extend(ingress.default_backend.iter().cloned());
        out.sort();
        out.dedup();
        out
    }

    /// Whether the Index holds this object of `cluster` (`namespace` empty for an
    /// IngressClass).
    pub fn has_object(
        &self,
        cluster: &ClusterName,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> bool {
        let Some(store) = self.clusters.iter().find(|c| c.name == *cluster) else {
            return false;
        };
        let key: ObjectKey = (Arc::from(namespace), Arc::from(name));
        match kind {
            Kind::Ingress => store.ingresses.contains_key(&key),
            Kind::IngressClass => store.classes.contains_key(name),
            Kind::Service => store.services.contains_key(&key),
            Kind::EndpointSlice => store.slices.contains_key(&key),
            Kind::Secret => store.secrets.contains_key(&key),
            Kind::GatewayClass => store.gateway.classes.contains_key(name),
            Kind::Gateway => store.gateway.gateways.contains_key(&key),
            Kind::HTTPRoute => store.gateway.routes.contains_key(&key),
            Kind::ReferenceGrant => store.gateway.grants.contains_key(&key),
            Kind::Namespace => store.gateway.namespaces.contains_key(name),
        }
    }

    /// Cluster names in configuration order, with their current weights.
    pub fn cluster_weights(&self) -> Vec<(ClusterName, u32)> {
        self.clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight))
            .collect()
    }

    fn cluster_index(&mut self, cluster: &ClusterName) -> usize {
        if let Some(i) = self.clusters.iter().position(|c| c.name == *cluster) {
            return i;
        }
        self.clusters
            .push(ClusterStore::new(cluster.clone(), DEFAULT_WEIGHT));
        self.clusters.len() - 1
    }

    fn keys_of(&self, c: usize, kind: Kind) -> Vec<ObjectKey> {
        let store = &self.clusters[c];
        match kind {
            Kind::Ingress => store.ingresses.keys().cloned().collect(),
            Kind::IngressClass => store
                .classes
                .keys()
                .map(|n| (Arc::from(""), n.clone()))
                .collect(),
            Kind::Service => store.services.keys().cloned().collect(),
            Kind::EndpointSlice => store.slices.keys().cloned().collect(),
            Kind::Secret => store.secrets.keys().cloned().collect(),
            Kind::GatewayClass => store
                .gateway
                .classes
                .keys()
                .map(|n| (Arc::from(""), n.clone()))
                .collect(),
            Kind::Gateway => store.gateway.gateways.keys().cloned().collect(),
            Kind::HTTPRoute => store.gateway.routes.keys().cloned().collect(),
            Kind::ReferenceGrant => store.gateway.grants.keys().cloned().collect(),
            Kind::Namespace => store
                .gateway
                .namespaces
                .keys()
                .map(|n| (Arc::from(""), n.clone()))
                .collect(),
        }
    }

    /// Stores (or removes, when `object` is `None`) one record and notes what to redo.
    fn put(
        &mut self,
        c: usize,
        key: &ObjectKey,
        record: Option<Record>,
        kind: Kind,
        dirty: &mut Dirty,
    ) {
        let store = &mut self.clusters[c];
        match (kind, record) {
            (Kind::Ingress, o) => {
                let record = match o {
                    Some(Record::Ingress(r)) => Some(r),
                    _ => None,
                };
                if store.ingresses.get(key) == record.as_ref() {
                    return;
                }
                match record {
                    Some(r) => store.ingresses.insert(key.clone(), r),
                    None => store.ingresses.remove(key),
                };
                dirty.ingresses.insert((c, key.clone()));
            }
            (Kind::IngressClass, o) => {
                let record = match o {
                    Some(Record::Class(r)) => Some(r),
                    _ => None,
                };
                if store.classes.get(&key.1) == record.as_ref() {
                    return;
                }
                match record {
                    Some(r) => store.classes.insert(key.1.clone(), r),
                    None => store.classes.remove(&key.1),
                };
                // Which Ingresses are ours may have changed: re-derive all of them.
                dirty
                    .ingresses
                    .extend(store.ingresses.keys().map(|k| (c, k.clone())));
            }
            (Kind::Service, o) => {
                let record = match o {
                    Some(Record::Service(r)) => Some(r),
                    _ => None,
                };
                if store.services.get(key) == record.as_ref() {
                    return;
                }
                match record {
                    Some(r) => store.services.insert(key.clone(), r),
                    None => store.services.remove(key),
                };
                dirty.diagnostics = true;
                if let Some(ups) = self.service_upstreams.get(key) {
                    dirty.upstreams.extend(ups.iter().cloned());
                }
                // A backendRef's Service appearing or going changes its status.
                dirty.gateway_lookups = true;
            }
            (Kind::EndpointSlice, o) => {
                let record = match o {
                    Some(Record::Slice(r)) => Some(r),
                    _ => None,
                };
                if store.slices.get(key) == record.as_ref() {
                    return;
                }
                // An unroutable endpoint changes no upstream, but it is reported.
                dirty.diagnostics |= store.reach.reports();
                for service in store.put_slice(key, record) {
                    if let Some(ups) = self.service_upstreams.get(&service) {
                        dirty.upstreams.extend(ups.iter().cloned());
                    }
                }
            }
            (Kind::Secret, o) => {
                let record = match o {
                    Some(Record::Secret(r)) => Some(r),
                    _ => None,
                };
                if store.secrets.get(key) == record.as_ref() {
                    return;
                }
                match record {
                    Some(r) => store.secrets.insert(key.clone(), r),
                    None => store.secrets.remove(key),
                };
                dirty.diagnostics = true;
                if let Some(hosts) = self.secret_hosts.get(key) {
                    dirty
                        .scopes
                        .extend(hosts.iter().cloned().map(RouteScope::Host));
                }
                // A listener's certificate appearing or going changes what it serves.
                dirty.gateway_lookups = true;
            }
            (kind, record) => {
                if gateways::put(&mut store.gateway, kind, key, record) {
                    dirty.gateways.insert(c);
                }
            }
        }
    }

    /// Re-derives claims, virtual hosts, certificates and upstreams that `dirty` names,
    /// and reports what actually changed.
    fn settle(&mut self, mut dirty: Dirty) -> Changes {
        for (c, key) in std::mem::take(&mut dirty.ingresses) {
            self.reclaim(c, &key, &mut dirty);
        }
        if std::mem::take(&mut dirty.gateway_lookups) {
            let with_gateways = self.clusters.iter().enumerate();
            let with_gateways = with_gateways.filter(|(_, c)| !c.gateway.is_empty());
            let found: Vec<usize> = with_gateways.map(|(i, _)| i).collect();
            dirty.gateways.extend(found);
        }
        for c in std::mem::take(&mut dirty.gateways) {
            self.reclaim_gateways(c, &mut dirty);
        }
        let mut changes = Changes {
            diagnostics: dirty.diagnostics,
            ..Changes::default()
        };
        for scope in std::mem::take(&mut dirty.scopes) {
            self.rebuild_scope(scope, &mut changes);
        }
        for key in std::mem::take(&mut dirty.upstreams) {
            self.rebuild_upstream(key, &mut changes);
        }
        if !changes.is_empty() {
            self.generation += 1;
        }
        changes
    }

    /// Withdraws what an Ingress claimed and claims again from its current record.
    fn reclaim(&mut self, c: usize, key: &ObjectKey, dirty: &mut Dirty) {
        dirty.diagnostics = true;
        let store = &self.clusters[c];
        let new = store.ingresses.get(key).and_then(|r| {
            let ours = store.is_ours(
                &r.class,
                &self.config.controller_name,
                &self.config.legacy_class,
            );
            ours.then(|| {
                (
                    IngressClaims::from_record(&store.name, key, r),
                    r.weights.clone(),
                )
            })
        });
        let old = self.claimed.remove(&(c, key.clone()));
        if old.as_ref() == new.as_ref().map(|(claims, _)| claims) && new.is_none() {
            return;
        }
        if let Some(old) = old {
            self.withdraw(&old, dirty);
        }
        if let Some((claims, weights)) = new {
            self.claim(&claims, weights.as_ref(), dirty);
            self.claimed.insert((c, key.clone()), claims);
        }
    }

    fn withdraw(&mut self, claims: &IngressClaims, dirty: &mut Dirty) {
        let Some(owner) = claims
            .routes
            .first()
            .map(|(_, c)| &c.owner)
            .or(claims.tls.first().map(|(_, c)| &c.owner))
        else {
            return;
        };
        for scope in claims.scopes() {
            if let Some(sc) = self.scopes.get_mut(&scope) {
                sc.withdraw(owner);
            }
            dirty.scopes.insert(scope);
        }
        for (host, tls) in &claims.tls {
            let secret = (tls.namespace.clone(), tls.secret.clone());
            if let Some(hosts) = self.secret_hosts.get_mut(&secret) {
                hosts.remove(host);
                if hosts.is_empty() {
                    self.secret_hosts.remove(&secret);
                }
            }
        }
        for up in claims.upstreams() {
            self.unreference(owner, up, dirty);
        }
    }

    /// Drops `owner`'s reference to an upstream (the upstream goes with its last).
    fn unreference(&mut self, owner: &Owner, up: &UpstreamKey, dirty: &mut Dirty) {
        dirty.upstreams.insert(up.clone());
        let Some(refs) = self.upstream_refs.get_mut(up) else {
            return;
        };
        refs.retain(|(o, _)| o != owner);
        if refs.is_empty() {
            self.upstream_refs.remove(up);
            let service = (up.namespace.clone(), up.service.clone());
            if let Some(set) = self.service_upstreams.get_mut(&service) {
                set.retain(|u| u != up);
                if set.is_empty() {
                    self.service_upstreams.remove(&service);
                }
            }
        }
    }

    /// Records `owner`'s reference to an upstream, with its weights annotation.
    fn reference(
        &mut self,
        owner: &Owner,
        up: &UpstreamKey,
        weights: Option<&ClusterWeights>,
        dirty: &mut Dirty,
    ) {
        dirty.upstreams.insert(up.clone());
        let refs = self.upstream_refs.entry(up.clone()).or_default();
        if let Err(at) = refs.binary_search_by(|(o, _)| o.cmp(owner)) {
            refs.reserve_exact(1);
            refs.insert(at, (owner.clone(), weights.cloned()));
        }
        let ups = self
            .service_upstreams
            .entry((up.namespace.clone(), up.service.clone()))
            .or_default();
        if !ups.contains(up) {
            ups.push_exact(up.clone());
        }
    }

    fn claim(
        &mut self,
        claims: &IngressClaims,
        weights: Option<&ClusterWeights>,
        dirty: &mut Dirty,
    ) {
        for (scope, claim) in &claims.routes {
            self.scopes
                .entry(scope.clone())
                .or_default()
                .routes
                .push_exact(claim.clone());
            dirty.scopes.insert(scope.clone());
        }
        for (host, claim) in &claims.tls {
            self.claim_tls(host, claim, dirty);
        }
        for (_, claim) in &claims.routes {
            self.reference(&claim.owner, &claim.upstream, weights, dirty);
        }
    }

    /// Resolves one cluster's Gateway API objects again and replaces what they claim.
    fn reclaim_gateways(&mut self, c: usize, dirty: &mut Dirty) {
        dirty.diagnostics = true;
        let store = &self.clusters[c];
        let resolution =
            gateways::resolve(store, &self.clusters, &self.config.gateway_controller_name);
        let new = gateways::claims(&store.name, store, &resolution);
        let store = &mut self.clusters[c];
        // A new value only when it changed: the status writer looks again on each.
        if *store.gateway.resolution != resolution {
            store.gateway.resolution = Arc::new(resolution);
        }
        if store.gateway.claims == new {
            return;
        }
        let old = std::mem::replace(&mut store.gateway.claims, new.clone());
        let keys: BTreeSet<_> = old.keys().chain(new.keys()).cloned().collect();
        let empty = gateways::ObjectClaims::default();
        for key in keys {
            let was = old.get(&key).unwrap_or(&empty);
            let now = new.get(&key).unwrap_or(&empty);
            if was != now {
                self.withdraw_gateway_claims(was, dirty);
                self.claim_gateway_claims(now, dirty);
            }
        }
    }

    fn withdraw_gateway_claims(&mut self, old: &gateways::ObjectClaims, dirty: &mut Dirty) {
        for (scope, claim) in &old.rules {
            if let Some(sc) = self.scopes.get_mut(scope)
                && let Some(at) = sc.rules.iter().position(|r| r == claim)
            {
                sc.rules.swap_remove(at);
            }
            dirty.scopes.insert(scope.clone());
        }
        for (host, claim) in &old.tls {
            let scope = RouteScope::Host(host.clone());
            if let Some(sc) = self.scopes.get_mut(&scope)
                && let Some(at) = sc.tls.iter().position(|t| t == claim)
            {
                sc.tls.swap_remove(at);
            }
            dirty.scopes.insert(scope);
        }
        for (owner, up) in &old.upstreams {
            self.unreference(owner, up, dirty);
        }
    }

    fn claim_gateway_claims(&mut self, new: &gateways::ObjectClaims, dirty: &mut Dirty) {
        for (scope, claim) in &new.rules {
            self.scopes
                .entry(scope.clone())
                .or_default()
                .rules
                .push_exact(claim.clone());
            dirty.scopes.insert(scope.clone());
        }
        for (host, claim) in &new.tls {
            self.claim_tls(host, claim, dirty);
        }
        for (owner, up) in &new.upstreams {
            self.reference(owner, up, None, dirty);
        }
    }

    /// A TLS claim on a host, by an Ingress or a Gateway's listener.
    fn claim_tls(&mut self, host: &HostPattern, claim: &claims::TlsClaim, dirty: &mut Dirty) {
        let scope = RouteScope::Host(host.clone());
        self.scopes
            .entry(scope.clone())
            .or_default()
            .tls
            .push_exact(claim.clone());
        dirty.scopes.insert(scope);
        let secret = (claim.namespace.clone(), claim.secret.clone());
        self.secret_hosts
            .entry(secret)
            .or_default()
            .insert(host.clone());
    }

    /// The Gateway API resolution of one cluster: what podgate serves and the status
    /// every GatewayClass, Gateway and HTTPRoute parent of podgate's should show.
    pub fn gateway_resolution(&self, cluster: &ClusterName) -> Option<Arc<Resolution>> {
        let store = self.clusters.iter().find(|c| c.name == *cluster)?;
        Some(Arc::clone(&store.gateway.resolution))
    }

    fn rebuild_scope(&mut self, scope: RouteScope, changes: &mut Changes) {
        let (vhost, conflicts) = match self.scopes.get(&scope) {
            Some(claims) if !claims.is_empty() => {
                let (vhost, conflicts) = routes::build(claims);
                let tls = vhost
                    .as_ref()
                    .and(claims.tls_winner())
                    .and_then(|w| self.certificate_for(w));
                let vhost = vhost.map(|mut v| {
                    v.tls = tls.as_ref().map(|cert| cert.id.clone());
                    v
                });
                if let Some(cert) = tls {
                    self.set_certificate(cert, changes);
                }
                (vhost, conflicts)
            }
            _ => {
                self.scopes.remove(&scope);
                (None, Vec::new())
            }
        };
        if conflicts.is_empty() {
            self.conflicts.remove(&scope);
        } else {
            self.conflicts.insert(scope.clone(), conflicts);
        }
        let old_tls = self.vhosts.get(&scope).and_then(|v| v.tls.clone());
        let new_tls = vhost.as_ref().and_then(|v| v.tls.clone());
        if let Some(id) = &new_tls {
            *self.certificate_users.entry(id.clone()).or_default() += 1;
        }
        if let Some(id) = old_tls {
            self.release_certificate(&id, changes);
        }
        let changed = match vhost {
            Some(v) => {
                let changed = self.vhosts.get(&scope).is_none_or(|old| **old != v);
                if changed {
                    self.vhosts.insert(scope.clone(), Arc::new(v));
                }
                changed
            }
            None => self.vhosts.remove(&scope).is_some(),
        };
        if changed {
            changes.routes.insert(scope);
        }
    }

    /// The certificate a TLS claim names, if its Secret is valid: the Secret in the
    /// owner's cluster first, then in any cluster (namespace sameness).
    fn certificate_for(&self, claim: &claims::TlsClaim) -> Option<Certificate> {
        let key = (claim.namespace.clone(), claim.secret.clone());
        let own = self.clusters.iter().find(|c| c.name == claim.owner.cluster);
        let record = own
            .into_iter()
            .chain(self.clusters.iter())
            .find_map(|c| c.secrets.get(&key))?;
        match record {
            SecretRecord::Tls { cert_pem, key_pem } => Some(Certificate {
                id: format!("{}/{}", key.0, key.1),
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            }),
            SecretRecord::Invalid(_) => None,
        }
    }

    fn set_certificate(&mut self, cert: Certificate, changes: &mut Changes) {
        if self.certificates.get(&cert.id) != Some(&cert) {
            changes.certificates.insert(cert.id.clone());
            self.certificates.insert(cert.id.clone(), cert);
        }
    }

    fn release_certificate(&mut self, id: &str, changes: &mut Changes) {
        let Some(users) = self.certificate_users.get_mut(id) else {
            return;
        };
        *users -= 1;
        if *users == 0 {
            self.certificate_users.remove(id);
            if self.certificates.remove(id).is_some() {
                changes.certificates.insert(id.to_owned());
            }
        }
    }

    fn rebuild_upstream(&mut self, key: UpstreamKey, changes: &mut Changes) {
        let Some(refs) = self.upstream_refs.get(&key) else {
            self.holds.forget(&key);
            if self.upstreams.remove(&key).is_some() {
                changes.upstreams.insert(key);
            }
            return;
        };
        let app = (key.namespace.clone(), key.service.clone());
        // The oldest referencing Ingress's annotation stands for the Ingresses.
        let ingress_weights = refs.iter().find_map(|(_, w)| w.as_ref());
        let app_weights = self.app_weights.get(&app);
        let raw = upstreams::compute(&key, &self.clusters, app_weights, ingress_weights, &[]);
        // Hold-down: a recovered cluster stays out until its hold is released.
        let held = self.holds.observe(&raw, &mut changes.held);
        let new = if held.is_empty() {
            raw
        } else {
            upstreams::compute(&key, &self.clusters, app_weights, ingress_weights, &held)
        };
        if self.upstreams.get(&key).is_none_or(|old| **old != new) {
            self.upstreams.insert(key.clone(), Arc::new(new));
            changes.upstreams.insert(key);
        }
    }
}
