//! The route table: hosts → paths → upstream, plus the Ingress default backends.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{HostPattern, HttpRule, PathMatch, UpstreamKey, WeightedBackend};

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
    /// Gateway API rules (contract version 2), tried in order before `routes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HttpRule>,
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

/// How one request is routed, step by step (for "explain this URL"): the same
/// decisions as [`RouteTable::route`], with what was considered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteExplanation {
    /// The request host after normalisation (lower case, no port, no trailing dot).
    pub host: String,
    /// `exact`, `wildcard` (one extra label), `rules without a host`, or `none`.
    pub host_match: &'static str,
    /// The host pattern that matched, for `exact` and `wildcard`.
    pub pattern: Option<HostPattern>,
    /// The matched host's rules in precedence order, each with whether it matches.
    pub rules: Vec<RuleCheck>,
    /// What decided: `path rule`, `the host's default backend`, `the default backend`,
    /// or `nothing` (404).
    pub via: &'static str,
    /// The winning rule, when `via` is `path rule`.
    pub rule: Option<PathMatch>,
    pub upstream: Option<UpstreamKey>,
    /// The certificate id served for the host, if TLS is on.
    pub tls: Option<String>,
    /// The host's Gateway API rules in order (tried before `rules`), each with whether
    /// its path matches and what else a request needs to take it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateway_rules: Vec<GatewayRuleCheck>,
    /// The split when a Gateway API rule decided (`via` is `Gateway API rule`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<WeightedBackend>,
}

/// One Gateway API rule of the matched host, checked against the request path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewayRuleCheck {
    pub source: String,
    pub path: PathMatch,
    /// A `RegularExpression` path match instead of `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// What a request needs besides its path: `method GET`, `header x: 1`, `query q=1`
    /// (a URL alone does not tell).
    pub needs: Vec<String>,
    pub backends: Vec<WeightedBackend>,
    /// A redirect answers instead of an upstream.
    pub redirects: bool,
    pub path_matches: bool,
}

/// One rule of the matched host, checked against the request path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleCheck {
    pub path: PathMatch,
    pub upstream: UpstreamKey,
    pub matches: bool,
}

impl RouteTable {
    /// Explains the routing of `request_host` / `request_path` (the path without its
    /// query string).
    pub fn explain(&self, request_host: &str, request_path: &str) -> RouteExplanation {
        let host = super::host::normalize_request_host(request_host);
        let (host_match, pattern, vhost) = self.explain_host(&host);
        // At any depth only the rules serve: the Ingress paths are one label deep.
        let deep = host_match.starts_with("wildcard (any depth");
        let rules: Vec<RuleCheck> = vhost
            .filter(|_| !deep)
            .map(|v| {
                v.routes
                    .iter()
                    .map(|r| RuleCheck {
                        path: r.path.clone(),
                        upstream: r.upstream.clone(),
                        matches: r.path.matches(request_path),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let gateway_rules: Vec<GatewayRuleCheck> = vhost
            .map(|v| {
                v.rules
                    .iter()
                    .map(|r| gateway_check(r, request_path))
                    .collect()
            })
            .unwrap_or_default();
        // The first rule whose path matches and that needs nothing else decides; a rule
        // before it that needs more decides for the requests that have it.
        if let Some(g) = gateway_rules
            .iter()
            .find(|g| g.path_matches && g.needs.is_empty())
        {
            let upstream = (!g.redirects)
                .then(|| {
                    g.backends
                        .iter()
                        .filter(|b| b.weight > 0)
                        .max_by_key(|b| b.weight)
                        .and_then(|b| b.upstream.clone())
                })
                .flatten();
            return RouteExplanation {
                host,
                host_match,
                pattern,
                rules,
                via: if g.redirects {
                    "Gateway API rule (a redirect)"
                } else {
                    "Gateway API rule"
                },
                rule: Some(g.path.clone()),
                upstream,
                tls: vhost.and_then(|v| v.tls.clone()),
                backends: g.backends.clone(),
                gateway_rules,
            };
        }
        let winner = rules.iter().find(|r| r.matches);
        let (via, rule, upstream) = match (
            winner,
            vhost
                .filter(|_| !deep)
                .and_then(|v| v.default_backend.as_ref()),
            &self.default_backend,
        ) {
            (Some(r), _, _) => ("path rule", Some(r.path.clone()), Some(r.upstream.clone())),
            (None, Some(d), _) => ("the host's default backend", None, Some(d.clone())),
            (None, None, Some(d)) => ("the default backend", None, Some(d.clone())),
            (None, None, None) => ("nothing", None, None),
        };
        RouteExplanation {
            host,
            host_match,
            pattern,
            rules,
            via,
            rule,
            upstream,
            tls: vhost.and_then(|v| v.tls.clone()),
            gateway_rules,
            backends: Vec::new(),
        }
    }
}

impl RouteTable {
    /// Which entry serves `host`, and how it was found (for `explain`).
    fn explain_host(
        &self,
        host: &str,
    ) -> (&'static str, Option<HostPattern>, Option<&VirtualHost>) {
        let exact = HostPattern::parse(host)
            .ok()
            .and_then(|h| self.hosts.get_key_value(&h));
        let wildcard = || {
            let (_, rest) = host.split_once('.')?;
            let pattern = HostPattern::parse(&format!("*.{rest}")).ok()?;
            self.hosts.get_key_value(&pattern)
        };
        // A Gateway API wildcard (a host with rules) matches at any depth.
        let deep = || {
            let mut rest = host.split_once('.')?.1;
            while let Some((_, deeper)) = rest.split_once('.') {
                let pattern = HostPattern::parse(&format!("*.{deeper}")).ok()?;
                if let Some((p, v)) = self.hosts.get_key_value(&pattern)
                    && !v.rules.is_empty()
                {
                    return Some((p, v));
                }
                rest = deeper;
            }
            None
        };
        let (host_match, pattern, vhost) = match exact
            .map(|e| ("exact", e))
            .or_else(|| wildcard().map(|w| ("wildcard", w)))
            .or_else(|| deep().map(|w| ("wildcard (any depth: Gateway API)", w)))
        {
            Some((how, (p, v))) => (how, Some(p.clone()), Some(v)),
            None => match &self.any_host {
                Some(v) => ("rules without a host", None, Some(v)),
                None => ("none", None, None),
            },
        };
        (host_match, pattern, vhost)
    }
}

fn gateway_check(r: &HttpRule, request_path: &str) -> GatewayRuleCheck {
    let mut needs: Vec<String> = r.method.iter().map(|m| format!("method {m}")).collect();
    needs.extend(
        r.headers
            .iter()
            .map(|h| format!("header {}: {}", h.name, h.value)),
    );
    needs.extend(
        r.query
            .iter()
            .map(|q| format!("query {}={}", q.name, q.value)),
    );
    GatewayRuleCheck {
        source: r.source.clone(),
        path: r.path.clone(),
        path_regex: r.path_regex.clone(),
        needs,
        backends: r.backends.clone(),
        redirects: r.redirect().is_some(),
        path_matches: r.path_matches(request_path),
    }
}

#[cfg(test)]
mod explain_tests {
    use super::*;
    use crate::model::PortRef;

    fn key(svc: &str) -> UpstreamKey {
        UpstreamKey::new("shop", svc, PortRef::Number(80))
    }

    fn table() -> RouteTable {
        let mut hosts = BTreeMap::new();
        hosts.insert(
            HostPattern::parse("shop.example.com").unwrap(),
            VirtualHost {
                routes: vec![
                    Route {
                        path: PathMatch::exact("/api/health"),
                        upstream: key("health"),
                    },
                    Route {
                        path: PathMatch::prefix("/api"),
                        upstream: key("api"),
                    },
                ],
                default_backend: Some(key("web")),
                tls: Some("shop/cert".to_owned()),
                rules: Vec::new(),
            },
        );
        hosts.insert(
            HostPattern::parse("*.example.com").unwrap(),
            VirtualHost {
                routes: vec![Route {
                    path: PathMatch::prefix("/"),
                    upstream: key("any"),
                }],
                ..VirtualHost::default()
            },
        );
        RouteTable {
            hosts,
            any_host: None,
            default_backend: Some(key("fallback")),
        }
    }

    #[test]
    fn explains_the_same_choice_as_route() {
        let t = table();
        for (host, path) in [
            ("Shop.Example.com:443", "/api/users"),
            ("shop.example.com", "/api/health"),
            ("shop.example.com", "/other"),
            ("x.example.com", "/"),
            ("a.b.example.com", "/"),
            ("unknown.test", "/"),
        ] {
            let e = t.explain(host, path);
            assert_eq!(e.upstream.as_ref(), t.route(&e.host, path), "{host}{path}");
        }
        let e = t.explain("Shop.Example.com:443", "/api/users");
        assert_eq!((e.host_match, e.via), ("exact", "path rule"));
        assert_eq!(e.rule, Some(PathMatch::prefix("/api")));
        assert_eq!(
            e.rules.iter().map(|r| r.matches).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(e.tls.as_deref(), Some("shop/cert"));
        let e = t.explain("shop.example.com", "/other");
        assert_eq!(e.via, "the host's default backend");
        let e = t.explain("x.example.com", "/");
        assert_eq!(e.host_match, "wildcard");
        assert_eq!(e.pattern.unwrap().as_str(), "*.example.com");
        let e = t.explain("unknown.test", "/");
        assert_eq!((e.host_match, e.via), ("none", "the default backend"));
    }

    #[test]
    fn a_gateway_wildcard_is_explained_at_any_depth_and_only_by_its_rules() {
        use crate::model::WeightedBackend;
        let mut t = RouteTable::default();
        t.hosts.insert(
            HostPattern::parse("*.gw.example.com").unwrap(),
            VirtualHost {
                rules: vec![HttpRule {
                    source: "HTTPRoute shop/gw rule 0".into(),
                    ..HttpRule::to(
                        PathMatch::prefix("/api"),
                        vec![WeightedBackend {
                            upstream: Some(key("gw")),
                            weight: 1,
                        }],
                    )
                }],
                routes: vec![Route {
                    path: PathMatch::prefix("/"),
                    upstream: key("ingress"),
                }],
                default_backend: Some(key("default")),
                ..VirtualHost::default()
            },
        );
        let e = t.explain("a.b.gw.example.com", "/api/x");
        assert_eq!(e.host_match, "wildcard (any depth: Gateway API)");
        assert_eq!((e.via, e.upstream), ("Gateway API rule", Some(key("gw"))));
        // One label deep, the Ingress paths serve too; deeper, only the rules.
        let e = t.explain("a.gw.example.com", "/other");
        assert_eq!(e.upstream, Some(key("ingress")));
        let e = t.explain("a.b.gw.example.com", "/other");
        assert_eq!((e.via, e.upstream.clone()), ("nothing", None), "{e:?}");
    }
}
