//! The route table: hosts → paths → upstream, plus the Ingress default backends.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{HostPattern, PathMatch, UpstreamKey};

/// One path rule of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub path: PathMatch,
    pub upstream: UpstreamKey,
}

/// Everything served for one host pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// A host given twice (also as `A.example.com` and `a.example.com.`, which are one
    /// pattern) is refused when read: JSON would otherwise keep the last silently.
    #[serde(deserialize_with = "unique_hosts")]
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

/// Reads `hosts`, refusing a host pattern that appears twice, by name.
fn unique_hosts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<HostPattern, VirtualHost>, D::Error> {
    struct Hosts;

    impl<'de> Visitor<'de> for Hosts {
        type Value = BTreeMap<HostPattern, VirtualHost>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of host patterns to virtual hosts")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut hosts = BTreeMap::new();
            while let Some(host) = map.next_key::<HostPattern>()? {
                let vhost: VirtualHost = map.next_value()?;
                if hosts.contains_key(&host) {
                    return Err(de::Error::custom(format!(
                        "host {:?} appears twice in routes.hosts",
                        host.as_str()
                    )));
                }
                hosts.insert(host, vhost);
            }
            Ok(hosts)
        }
    }

    deserializer.deserialize_map(Hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_twice_is_refused_and_the_table_round_trips() {
        let err = serde_json::from_str::<RouteTable>(
            r#"{"hosts": {"a.example.com": {"routes": []}, "A.Example.com.": {"routes": []}}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"host "a.example.com" appears twice"#),
            "{err}"
        );
        let table: RouteTable = serde_json::from_str(
            r#"{"hosts": {"a.example.com": {"routes": []}, "*.example.com": {"routes": []}}}"#,
        )
        .unwrap();
        let again: RouteTable =
            serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
        assert_eq!(again, table);
    }
}
