//! The route table: hosts → paths → upstream, plus the Ingress default backends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HostPattern, PathMatch, UpstreamKey};

/// One path rule of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub path: PathMatch,
    pub upstream: UpstreamKey,
}

/// Everything served for one host pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHost {
    /// Sorted by [`PathMatch::precedence`]: the first match wins.
    pub routes: Vec<Route>,
    /// The Ingress `defaultBackend` of the Ingress that owns this host, used when no
    /// path matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<UpstreamKey>,
    /// Id of the certificate (`namespace/secret`) to serve for this host, if TLS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

impl VirtualHost {
    /// The upstream for a request path: the first rule in precedence order, else the
    /// default backend.
    pub fn route(&self, request_path: &str) -> Option<&UpstreamKey> {
        self.routes
            .iter()
            .find(|r| r.path.matches(request_path))
            .map(|r| &r.upstream)
            .or(self.default_backend.as_ref())
    }
}

/// The whole desired routing state of one LB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub hosts: BTreeMap<HostPattern, VirtualHost>,
    /// Rules written without a `host`: they serve requests whose host matches no entry
    /// of `hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_host: Option<VirtualHost>,
    /// Catch-all: the `defaultBackend` of an Ingress without rules (oldest wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<UpstreamKey>,
}

impl RouteTable {
    /// Reference lookup (the proxy compiles its own faster form). Exact host beats
    /// wildcard, wildcard beats host-less rules; no path match → that host's default
    /// backend, else the catch-all default.
    pub fn route(&self, request_host: &str, request_path: &str) -> Option<&UpstreamKey> {
        let exact = HostPattern::parse(request_host)
            .ok()
            .and_then(|h| self.hosts.get(&h));
        let vhost = exact.or_else(|| {
            let (_, rest) = request_host.split_once('.')?;
            let wildcard = HostPattern::parse(&format!("*.{rest}")).ok()?;
            self.hosts.get(&wildcard)
        });
        vhost
            .or(self.any_host.as_ref())
            .and_then(|v| v.route(request_path))
            .or(self.default_backend.as_ref())
    }
}
