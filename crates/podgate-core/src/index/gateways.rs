//! The Gateway API in the Index: each cluster's GatewayClasses, Gateways, HTTPRoutes
//! and ReferenceGrants, resolved as the specification states it (`crate::gateway`)
//! whenever one of them — or a Service or Secret they may name — changes, and turned
//! into claims like an Ingress's: rules on host scopes (`RuleClaim`), the listeners'
//! certificates on hosts (`TlsClaim`), and references to upstreams.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::gateway::{
    self, Gateway, GatewayClass, HttpRoute, Labels, Lookup, ReferenceGrant, Resolution, World,
};
use crate::model::{ClusterName, HostPattern, UpstreamKey};

use super::RouteScope;
use super::claims::{Owner, OwnerKind, RuleClaim, TlsClaim};
use super::records::{Map, ObjectKey, SecretRecord};
use super::store::ClusterStore;

/// One cluster's Gateway API objects and what they resolved to.
#[derive(Debug, Default)]
pub(crate) struct GatewayObjects {
    pub(crate) classes: Map<Arc<str>, Arc<GatewayClass>>,
    pub(crate) gateways: Map<ObjectKey, Arc<Gateway>>,
    pub(crate) routes: Map<ObjectKey, Arc<HttpRoute>>,
    pub(crate) grants: Map<ObjectKey, Arc<ReferenceGrant>>,
    /// Namespace labels, watched only where the Gateway API is.
    pub(crate) namespaces: Map<Arc<str>, Arc<Labels>>,
    pub(crate) resolution: Arc<Resolution>,
    /// What the resolution claims now, kept so that it can be withdrawn exactly.
    pub(crate) claims: GatewayClaims,
}

impl GatewayObjects {
    /// Whether there is anything to resolve (a cluster without the CRDs has nothing).
    pub(crate) fn is_empty(&self) -> bool {
        self.classes.is_empty() && self.gateways.is_empty() && self.routes.is_empty()
    }
}

/// Everything a cluster's Gateway API objects claim, per object (an HTTPRoute's rules
/// and upstreams, a Gateway's certificates), so that a change re-claims only the
/// objects whose claims changed.
pub(crate) type GatewayClaims = BTreeMap<(OwnerKind, Arc<str>, Arc<str>), ObjectClaims>;

/// What one HTTPRoute or Gateway claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ObjectClaims {
    pub(crate) rules: Vec<(RouteScope, RuleClaim)>,
    pub(crate) tls: Vec<(HostPattern, TlsClaim)>,
    pub(crate) upstreams: Vec<(Owner, UpstreamKey)>,
}

/// What resolution asks of the other objects: Services and Secrets of every cluster
/// (namespace sameness: a backendRef names one Service across clusters, as an Ingress
/// backend does; a certificate is found where the Index finds it), and the labels of
/// the route's namespace in its own cluster.
struct Clusters<'a> {
    own: &'a ClusterStore,
    all: &'a [ClusterStore],
}

impl Lookup for Clusters<'_> {
    fn service(&self, namespace: &str, name: &str) -> bool {
        let key = (Arc::from(namespace), Arc::from(name));
        self.all.iter().any(|c| c.services.contains_key(&key))
    }

    fn tls_secret(&self, namespace: &str, name: &str) -> bool {
        let key = (Arc::from(namespace), Arc::from(name));
        self.all
            .iter()
            .any(|c| matches!(c.secrets.get(&key), Some(SecretRecord::Tls { .. })))
    }

    fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.own.gateway.namespaces.get(namespace).map(|l| &**l)
    }
}

/// Resolves one cluster's objects, in a stable order (by key), so the result does not
/// depend on the order events arrived in.
pub(crate) fn resolve(
    store: &ClusterStore,
    all: &[ClusterStore],
    controller_name: &str,
) -> Resolution {
    fn sorted<K: Ord, V>(m: &Map<K, Arc<V>>) -> Vec<&V> {
        let mut v: Vec<(&K, &Arc<V>)> = m.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, o)| &**o).collect()
    }
    let objects = &store.gateway;
    let classes = sorted(&objects.classes);
    let gateways = sorted(&objects.gateways);
    let routes = sorted(&objects.routes);
    let grants = sorted(&objects.grants);
    let world = World {
        controller_name,
        classes: &classes,
        gateways: &gateways,
        routes: &routes,
        grants: &grants,
    };
    gateway::resolve(&world, &Clusters { own: store, all })
}

/// The claims of a resolution: one rule claim per served match and hostname, the first
/// usable certificate of an HTTPS listener on each hostname served through it, and the
/// upstreams of resolved backends.
pub(crate) fn claims(
    cluster: &ClusterName,
    store: &ClusterStore,
    resolution: &Resolution,
) -> GatewayClaims {
    let mut out = GatewayClaims::default();
    for a in &resolution.attachments {
        let owner = Owner {
            created: a.created,
            namespace: Arc::from(a.route.0.as_str()),
            name: Arc::from(a.route.1.as_str()),
            cluster: cluster.clone(),
            kind: OwnerKind::HttpRoute,
        };
        let route_key = (
            OwnerKind::HttpRoute,
            owner.namespace.clone(),
            owner.name.clone(),
        );
        let route_claims = out.entry(route_key).or_default();
        let host = match &a.hostname {
            None => None,
            Some(h) => match HostPattern::parse(h) {
                Ok(p) => Some(p),
                Err(_) => continue, // the API server's pattern refuses such names
            },
        };
        let scope = host.clone().map_or(RouteScope::AnyHost, RouteScope::Host);
        for (match_index, m) in a.rule.matches.iter().enumerate() {
            let Some(rule) = gateway::http_rule(a, match_index) else {
                continue;
            };
            route_claims.rules.push((
                scope.clone(),
                RuleClaim {
                    owner: owner.clone(),
                    rank: m.rank(),
                    rule_index: a.rule_index,
                    match_index,
                    rule: Arc::new(rule),
                },
            ));
        }
        for b in a.rule.backends.iter().filter(|b| b.problem.is_none()) {
            if let Some(key) = gateway::upstream_key(b) {
                route_claims.upstreams.push((owner.clone(), key));
            }
        }
        if let (Some(host), Some((ns, secret))) = (host, a.certificates.first()) {
            let gateway_key: ObjectKey = (
                Arc::from(a.gateway.0.as_str()),
                Arc::from(a.gateway.1.as_str()),
            );
            let created = store
                .gateway
                .gateways
                .get(&gateway_key)
                .and_then(|g| g.metadata.creation_timestamp.as_ref())
                .map_or(0, |t| t.0.as_second());
            let key = (
                OwnerKind::Gateway,
                gateway_key.0.clone(),
                gateway_key.1.clone(),
            );
            out.entry(key).or_default().tls.push((
                host,
                TlsClaim {
                    owner: Owner {
                        created,
                        namespace: gateway_key.0.clone(),
                        name: gateway_key.1.clone(),
                        cluster: cluster.clone(),
                        kind: OwnerKind::Gateway,
                    },
                    namespace: Arc::from(ns.as_str()),
                    secret: Arc::from(secret.as_str()),
                },
            ));
        }
    }
    for claims in out.values_mut() {
        claims
            .tls
            .sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.owner.cmp(&b.1.owner)));
        claims.tls.dedup();
        claims.upstreams.sort();
        claims.upstreams.dedup();
    }
    out
}

/// Stores or removes one Gateway API object; whether anything changed.
pub(crate) fn put(
    objects: &mut GatewayObjects,
    kind: super::Kind,
    key: &ObjectKey,
    record: Option<super::prepared::Record>,
) -> bool {
    use super::Kind;
    use super::prepared::Record;
    fn store<K: std::hash::Hash + Eq + Clone, V: PartialEq>(
        map: &mut Map<K, Arc<V>>,
        key: &K,
        value: Option<Arc<V>>,
    ) -> bool {
        if map.get(key).map(|v| &**v) == value.as_deref() {
            return false;
        }
        match value {
            Some(v) => map.insert(key.clone(), v),
            None => map.remove(key),
        };
        true
    }
    match (kind, record) {
        (Kind::GatewayClass, r) => {
            let v = match r {
                Some(Record::GatewayClass(v)) => Some(v),
                _ => None,
            };
            store(&mut objects.classes, &key.1, v)
        }
        (Kind::Gateway, r) => {
            let v = match r {
                Some(Record::Gateway(v)) => Some(v),
                _ => None,
            };
            store(&mut objects.gateways, key, v)
        }
        (Kind::HTTPRoute, r) => {
            let v = match r {
                Some(Record::HttpRoute(v)) => Some(v),
                _ => None,
            };
            store(&mut objects.routes, key, v)
        }
        (Kind::ReferenceGrant, r) => {
            let v = match r {
                Some(Record::ReferenceGrant(v)) => Some(v),
                _ => None,
            };
            store(&mut objects.grants, key, v)
        }
        (Kind::Namespace, r) => {
            let v = match r {
                Some(Record::Namespace(v)) => Some(v),
                _ => None,
            };
            store(&mut objects.namespaces, &key.1, v)
        }
        _ => false,
    }
}
