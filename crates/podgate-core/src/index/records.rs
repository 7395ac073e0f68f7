//! The compact form the Index keeps of each Kubernetes object: only what routing needs.
//! Whole Kubernetes objects are never stored.

use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{EndpointState, HostPattern, PathMatch, Pem, UpstreamKey};

use super::Diagnostic;
use crate::model::shares::ClusterWeights;

/// Hash maps keyed by short strings: foldhash is several times faster than SipHash
/// here, and its per-process random seed still spreads adversarial names.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// `namespace/name` of a namespaced object, or `name` of a cluster-scoped one.
pub(crate) type ObjectKey = (Arc<str>, Arc<str>);

/// An IngressClass: whether podgate serves it and whether it is the default class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClassRecord {
    pub(crate) controller: String,
    pub(crate) is_default: bool,
}

/// Which class an Ingress asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClassRequest {
    /// `spec.ingressClassName`.
    Named(String),
    /// The legacy `kubernetes.io/ingress.class` annotation.
    Legacy(String),
    /// Neither: the default class applies.
    Default,
}

/// One Ingress path rule (or the Ingress default backend when `path` is `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleRecord {
    /// `None`: a rule without `host`.
    pub(crate) host: Option<HostPattern>,
    pub(crate) path: Option<PathMatch>,
    pub(crate) upstream: UpstreamKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IngressRecord {
    /// `metadata.creationTimestamp` in seconds: the older Ingress wins a conflict.
    pub(crate) created: i64,
    pub(crate) class: ClassRequest,
    pub(crate) rules: Vec<RuleRecord>,
    /// `spec.defaultBackend`.
    pub(crate) default_backend: Option<UpstreamKey>,
    /// `spec.tls`: hosts and the Secret name (same namespace).
    pub(crate) tls: Vec<(Vec<HostPattern>, Arc<str>)>,
    pub(crate) weights: Option<ClusterWeights>,
    /// Problems found while reading the object (bad hosts, paths, resource backends).
    pub(crate) diagnostics: Vec<Diagnostic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServicePortRecord {
    /// Empty for the single unnamed port.
    pub(crate) name: Arc<str>,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceRecord {
    pub(crate) ports: Vec<ServicePortRecord>,
    pub(crate) weights: Option<ClusterWeights>,
    /// `podgate.io/health-check`, when valid.
    pub(crate) health_check: Option<crate::model::HealthCheck>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl ServiceRecord {
    /// Resolves an Ingress port reference to the Service port's name, which names the
    /// EndpointSlice port.
    pub(crate) fn port_name(&self, port: &crate::model::PortRef) -> Option<&Arc<str>> {
        use crate::model::PortRef;
        self.ports
            .iter()
            .find(|p| match port {
                PortRef::Number(n) => p.port == *n,
                PortRef::Name(name) => p.name == *name,
            })
            .map(|p| &p.name)
    }
}

/// Where an endpoint runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Locality {
    pub(crate) zone: Option<Arc<str>>,
    pub(crate) node: Option<Arc<str>>,
}

/// One endpoint address of a slice, already classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceEndpoint {
    pub(crate) address: IpAddr,
    pub(crate) state: EndpointState,
    /// Zone and node, shared by every endpoint on the same node (one pointer here).
    pub(crate) locality: Option<Arc<Locality>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceRecord {
    /// The `kubernetes.io/service-name` label.
    pub(crate) service: Arc<str>,
    /// (port name, port number); the name is empty for an unnamed port.
    pub(crate) ports: Vec<(Arc<str>, u16)>,
    pub(crate) endpoints: Vec<SliceEndpoint>,
    /// Endpoints neither ready nor terminating (a pod starting, or held back by a
    /// readiness gate), with the state they take once counted (`gated`): Active.
    pub(crate) starting: Vec<SliceEndpoint>,
}

impl SliceRecord {
    /// How many of its endpoints the floor guard counts: Active or Draining.
    pub(crate) fn guarded(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| matches!(e.state, EndpointState::Active | EndpointState::Draining))
            .count()
    }
}

/// A valid `kubernetes.io/tls` Secret, or why it is not usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SecretRecord {
    Tls { cert_pem: Pem, key_pem: Pem },
    Invalid(String),
}
