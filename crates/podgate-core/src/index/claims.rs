//! What an Ingress of podgate's class claims: route entries per scope (host, host-less,
//! catch-all), TLS per host, and the upstreams it references. The oldest owner wins a
//! contested claim.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::model::{ClusterName, HostPattern, PathMatch, UpstreamKey};

use super::records::{IngressRecord, ObjectKey};

/// Where a route entry lives in the route table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RouteScope {
    Host(HostPattern),
    /// Rules without a host.
    AnyHost,
    /// The catch-all default backend (from an Ingress without rules).
    Default,
}

impl fmt::Display for RouteScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(h) => write!(f, "{h}"),
            Self::AnyHost => f.write_str("(any host)"),
            Self::Default => f.write_str("(default backend)"),
        }
    }
}

/// Who claims: ordered so that the oldest object (then namespace/name, then cluster)
/// sorts first and wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Owner {
    pub(crate) created: i64,
    pub(crate) namespace: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) cluster: ClusterName,
    /// An Ingress and an HTTPRoute (or Gateway) of one name are different owners.
    pub(crate) kind: OwnerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum OwnerKind {
    Ingress,
    /// An HTTPRoute (its rules and backends).
    HttpRoute,
    /// A Gateway (its listeners' certificates).
    Gateway,
}

impl Owner {
    /// Same Ingress (namespace sameness): the same namespace/name in any cluster.
    pub(crate) fn same_ingress(&self, other: &Self) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} in {}", self.namespace, self.name, self.cluster)
    }
}

/// One route entry claimed by one Ingress. `path: None` claims the scope's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteClaim {
    pub(crate) owner: Owner,
    pub(crate) path: Option<PathMatch>,
    pub(crate) upstream: UpstreamKey,
}

/// A TLS claim on a host: the Secret `namespace/secret` (an Ingress names Secrets of
/// its own namespace; a Gateway's listener may name another's through a grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsClaim {
    pub(crate) owner: Owner,
    pub(crate) namespace: Arc<str>,
    pub(crate) secret: Arc<str>,
}

/// One Gateway API rule match claimed on a scope by an HTTPRoute. Ordered by `rank`
/// (the specification's match precedence), then owner, rule and match order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleClaim {
    pub(crate) owner: Owner,
    pub(crate) rank: crate::gateway::Rank,
    pub(crate) rule_index: usize,
    pub(crate) match_index: usize,
    pub(crate) rule: Arc<crate::model::HttpRule>,
}

/// Everything one Ingress currently claims, kept so that it can be withdrawn exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IngressClaims {
    pub(crate) routes: Vec<(RouteScope, RouteClaim)>,
    pub(crate) tls: Vec<(HostPattern, TlsClaim)>,
}

impl IngressClaims {
    pub(crate) fn from_record(cluster: &ClusterName, key: &ObjectKey, r: &IngressRecord) -> Self {
        let owner = Owner {
            created: r.created,
            namespace: key.0.clone(),
            name: key.1.clone(),
            cluster: cluster.clone(),
            kind: OwnerKind::Ingress,
        };
        let scope_of = |h: &Option<HostPattern>| {
            h.as_ref()
                .map_or(RouteScope::AnyHost, |h| RouteScope::Host(h.clone()))
        };
        let mut routes: Vec<(RouteScope, RouteClaim)> = r
            .rules
            .iter()
            .map(|rule| {
                let claim = RouteClaim {
                    owner: owner.clone(),
                    path: rule.path.clone(),
                    upstream: rule.upstream.clone(),
                };
                (scope_of(&rule.host), claim)
            })
            .collect();
        if let Some(default) = &r.default_backend {
            // The Ingress default backend serves unmatched paths of its own hosts; an
            // Ingress without rules provides the catch-all.
            let mut scopes: Vec<RouteScope> = routes.iter().map(|(s, _)| s.clone()).collect();
            scopes.sort();
            scopes.dedup();
            if scopes.is_empty() {
                scopes.push(RouteScope::Default);
            }
            for scope in scopes {
                let claim = RouteClaim {
                    owner: owner.clone(),
                    path: None,
                    upstream: default.clone(),
                };
                routes.push((scope, claim));
            }
        }
        let tls = r
            .tls
            .iter()
            .flat_map(|(hosts, secret)| {
                hosts.iter().map(|h| {
                    let claim = TlsClaim {
                        owner: owner.clone(),
                        namespace: owner.namespace.clone(),
                        secret: secret.clone(),
                    };
                    (h.clone(), claim)
                })
            })
            .collect();
        Self { routes, tls }
    }

    pub(crate) fn upstreams(&self) -> impl Iterator<Item = &UpstreamKey> {
        self.routes.iter().map(|(_, c)| &c.upstream)
    }

    pub(crate) fn scopes(&self) -> impl Iterator<Item = RouteScope> + '_ {
        self.routes
            .iter()
            .map(|(s, _)| s.clone())
            .chain(self.tls.iter().map(|(h, _)| RouteScope::Host(h.clone())))
    }
}
