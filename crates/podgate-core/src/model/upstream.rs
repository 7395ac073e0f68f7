//! Upstreams: one per `namespace/service:port` across all clusters (namespace sameness),
//! holding every endpoint with the cluster it came from.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ClusterName;

/// How an Ingress names the Service port: by number or by name. Kept as written so that
/// the key is the same in every cluster; each cluster resolves it through its own Service.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged, try_from = "WrittenPort")]
pub enum PortRef {
    Number(u16),
    Name(Arc<str>),
}

/// A port as JSON may carry it, before the checks no Service port fails.
#[derive(Deserialize)]
#[serde(untagged)]
enum WrittenPort {
    Number(u16),
    Name(Arc<str>),
}

impl TryFrom<WrittenPort> for PortRef {
    type Error = &'static str;

    fn try_from(port: WrittenPort) -> Result<Self, Self::Error> {
        match port {
            WrittenPort::Number(0) => Err("port 0 is no Service port (1-65535)"),
            WrittenPort::Name(name) if name.is_empty() => Err("a port name cannot be empty"),
            WrittenPort::Number(n) => Ok(Self::Number(n)),
            WrittenPort::Name(name) => Ok(Self::Name(name)),
        }
    }
}

impl From<u16> for PortRef {
    fn from(n: u16) -> Self {
        Self::Number(n)
    }
}

impl From<&str> for PortRef {
    fn from(name: &str) -> Self {
        Self::Name(Arc::from(name))
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Debug for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `namespace/service:port`, the identity of an upstream in every LB.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamKey {
    pub namespace: Arc<str>,
    pub service: Arc<str>,
    pub port: PortRef,
}

impl UpstreamKey {
    pub fn new(namespace: &str, service: &str, port: PortRef) -> Self {
        Self {
            namespace: Arc::from(namespace),
            service: Arc::from(service),
            port,
        }
    }
}

impl fmt::Display for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

impl fmt::Debug for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether an endpoint takes new requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Ready: takes new requests.
    Active,
    /// Serving but terminating: keeps in-flight and keep-alive requests, takes no new ones.
    Draining,
}

/// One pod address of an upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub cluster: ClusterName,
    pub address: IpAddr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    pub state: EndpointState,
    /// Derived integer weight for LBs that only know server weights: within an upstream,
    /// the weights of one cluster's Active endpoints sum to that cluster's share.
    /// Draining endpoints always have weight 0.
    pub weight: u32,
}

/// An upstream with all its endpoints, sorted by cluster (in the controller's
/// configuration order), then address and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub key: UpstreamKey,
    /// Effective traffic share per cluster (configuration order) in per-mille (sums to 1000 when any cluster
    /// has an Active endpoint; empty otherwise). A cluster without Active endpoints has
    /// no entry: its share went to the others.
    pub shares: Vec<(ClusterName, u32)>,
    pub endpoints: Vec<Endpoint>,
    /// Active health checks, from the Service annotation `podgate.io/health-check`.
    /// Absent: none, and the upstream reads as before the field existed (an LB older
    /// than the field refuses an upstream that carries it: upgrade LBs first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<super::HealthCheck>,
}

impl Upstream {
    pub fn active(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.state == EndpointState::Active)
    }
}
