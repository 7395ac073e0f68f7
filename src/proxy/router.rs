//! The compiled routing table: request host and path → upstream key.
//!
//! Owns: turning a [`RouteTable`] into hash maps (exact hosts, wildcard suffixes) and a
//! precomputed, precedence-sorted path list per host. Compiled off the request path, only
//! when the route table itself changes. Must never look at endpoints or do I/O; it must
//! agree with [`RouteTable::route`], the reference semantics.

use std::borrow::Cow;
use std::collections::HashMap;

use podgate_core::model::{PathKind, PathMatch, RouteTable, UpstreamKey};

/// One host's rules, ready for matching.
#[derive(Debug)]
pub(crate) struct CompiledHost {
    /// Sorted by [`PathMatch::precedence`]: the first match wins.
    routes: Vec<(PathMatch, UpstreamKey)>,
    default_backend: Option<UpstreamKey>,
    /// Certificate id for this host, if TLS is on.
    pub(crate) tls: Option<String>,
    /// Gateway API rules, tried before `routes` (see `rules.rs`).
    pub(crate) rules: Box<[std::sync::Arc<super::rules::CompiledRule>]>,
}

impl CompiledHost {
    fn route(&self, path: &str) -> Option<&UpstreamKey> {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(path))
            .map(|(_, k)| k)
            .or(self.default_backend.as_ref())
    }
}

/// A request the fast path must hand to the general path.
#[derive(Debug)]
pub struct GeneralPath;

/// The route table in lookup form, plus the table as pushed (for `GET /v1/state`).
/// Public so that benchmarks and other data planes can use the same lookup.
#[derive(Debug, Default)]
pub struct Router {
    table: RouteTable,
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` is stored as `example.com`.
    wildcard: HashMap<Box<str>, usize>,
    hosts: Vec<CompiledHost>,
    /// Rules without a host: for requests whose host matches no entry.
    any_host: Option<CompiledHost>,
    /// Some wildcard host has Gateway API rules (matched at any depth).
    deep_wildcards: bool,
}

fn compile_host(vhost: &podgate_core::model::VirtualHost) -> CompiledHost {
    let mut routes: Vec<_> = vhost
        .routes
        .iter()
        .map(|r| (canonical(&r.path), r.upstream.clone()))
        .collect();
    // The model promises sorted input; sorting again keeps a careless pusher from
    // changing semantics.
    routes.sort_by(|a, b| a.0.precedence(&b.0));
    CompiledHost {
        routes,
        default_backend: vhost.default_backend.clone(),
        tls: vhost.tls.clone(),
        rules: super::rules::compile(vhost),
    }
}

impl Router {
    /// Compiles a table; cost is linear in its size, so do it off the request path.
    pub fn compile(table: RouteTable) -> Self {
        let mut router = Self::default();
        for (pattern, vhost) in &table.hosts {
            let index = router.hosts.len();
            router.hosts.push(compile_host(vhost));
            match pattern.wildcard_suffix() {
                Some(suffix) => {
                    router.deep_wildcards |= !vhost.rules.is_empty();
                    router.wildcard.insert(suffix.into(), index)
                }
                None => router.exact.insert(pattern.as_str().into(), index),
            };
        }
        router.any_host = table.any_host.as_ref().map(compile_host);
        router.table = table;
        router
    }

    pub(crate) fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The host entry for a request host (any case, maybe with a port): exact first,
    /// then a wildcard matching exactly one extra label.
    pub(crate) fn host(&self, raw_host: &str) -> Option<&CompiledHost> {
        let host = normalize(raw_host);
        if let Some(&i) = self.exact.get(host.as_ref()) {
            return self.hosts.get(i);
        }
        let (first, rest) = host.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(rest).and_then(|&i| self.hosts.get(i))
    }

    /// The host entry whose certificate a TLS handshake for `name` gets: as
    /// [`Self::host`], then a Gateway API wildcard at any depth.
    pub(crate) fn tls_host(&self, name: &str) -> Option<&CompiledHost> {
        self.host(name).or_else(|| self.deep_rules_host(name))
    }

    /// A Gateway API wildcard deeper than one label: `*.example.com` with rules also
    /// serves `a.b.example.com` (a suffix match of any depth, as the specification
    /// says), the longest suffix first; Ingress wildcards stay one label deep, so only a
    /// host with rules answers here, and only through its rules.
    fn deep_rules_host(&self, raw_host: &str) -> Option<&CompiledHost> {
        if !self.deep_wildcards {
            return None;
        }
        let host = normalize(raw_host);
        let (first, mut rest) = host.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        // The first suffix is the one-label wildcard `host` already tried.
        while let Some((_, deeper)) = rest.split_once('.') {
            if let Some(h) = self.wildcard.get(deeper).and_then(|&i| self.hosts.get(i))
                && !h.rules.is_empty()
            {
                return Some(h);
            }
            rest = deeper;
        }
        None
    }

    /// The Gateway API rule serving a request, as the general path chooses it (public
    /// for benchmarks).
    pub fn rule_for(
        &self,
        raw_host: &str,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Option<&podgate_core::model::HttpRule> {
        super::rules::first_match(self.rules(raw_host), method, path, headers, query)
            .map(|r| &r.rule)
    }

    /// The Gateway API rules of the host a request goes to (none for Ingress hosts).
    pub(crate) fn rules(&self, raw_host: &str) -> &[std::sync::Arc<super::rules::CompiledRule>] {
        self.host(raw_host)
            .or_else(|| self.deep_rules_host(raw_host))
            .or(self.any_host.as_ref())
            .map_or(&[], |h| &h.rules)
    }

    /// [`Self::route`] for the fast path, refused with [`GeneralPath`] when the host
    /// has Gateway API rules, which only the general path serves. One host lookup
    /// either way.
    pub fn route_without_rules(
        &self,
        raw_host: &str,
        path: &str,
    ) -> Result<Option<&UpstreamKey>, GeneralPath> {
        let direct = self.host(raw_host);
        if direct.is_none() && self.deep_rules_host(raw_host).is_some() {
            return Err(GeneralPath);
        }
        let host = direct.or(self.any_host.as_ref());
        if host.is_some_and(|h| !h.rules.is_empty()) {
            return Err(GeneralPath);
        }
        Ok(host
            .and_then(|h| h.route(path))
            .or(self.table.default_backend.as_ref()))
    }

    /// The upstream for a request, with the Ingress fallbacks: host-less rules for an
    /// unknown host, the host's default backend, then the table's catch-all.
    pub fn route(&self, raw_host: &str, path: &str) -> Option<&UpstreamKey> {
        self.host(raw_host)
            .or(self.any_host.as_ref())
            .and_then(|h| h.route(path))
            .or(self.table.default_backend.as_ref())
    }
}

/// A `Prefix` rule pushed with a trailing slash means the same as without it.
fn canonical(path: &PathMatch) -> PathMatch {
    let mut p = path.clone();
    if p.kind == PathKind::Prefix {
        p.path = std::sync::Arc::from(p.path.trim_end_matches('/'));
    }
    p
}

/// [`podgate_core::model::normalize_request_host`] without an allocation in the common case
/// (already lower case, no port, no trailing dot).
fn normalize(raw: &str) -> Cow<'_, str> {
    let plain = raw
        .bytes()
        .all(|b| !b.is_ascii_uppercase() && b != b':' && b != b'[')
        && !raw.ends_with('.');
    if plain {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(podgate_core::model::normalize_request_host(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{HostPattern, PortRef, Route, VirtualHost};

    fn key(name: &str) -> UpstreamKey {
        UpstreamKey::new("ns", name, PortRef::Number(80))
    }

    fn table() -> RouteTable {
        let mut t = RouteTable {
            any_host: None,
            default_backend: Some(key("catch-all")),
            ..RouteTable::default()
        };
        // Sorted, as the model promises, so the reference lookup can be compared.
        let vhost = |mut routes: Vec<(PathMatch, &str)>, default: Option<&str>| {
            routes.sort_by(|a, b| a.0.precedence(&b.0));
            VirtualHost {
                routes: routes
                    .into_iter()
                    .map(|(path, u)| Route {
                        path,
                        upstream: key(u),
                    })
                    .collect(),
                default_backend: default.map(key),
                tls: None,
                rules: Vec::new(),
            }
        };
        t.hosts.insert(
            HostPattern::parse("foo.example.com").unwrap(),
            vhost(
                vec![
                    (PathMatch::prefix("/"), "root"),
                    (PathMatch::prefix("/api"), "api"),
                    (PathMatch::exact("/api"), "api-exact"),
                ],
                None,
            ),
        );
        t.hosts.insert(
            HostPattern::parse("*.example.com").unwrap(),
            vhost(
                vec![(PathMatch::prefix("/w"), "wild")],
                Some("wild-default"),
            ),
        );
        t
    }

    #[test]
    fn lookups_follow_ingress_semantics() {
        let r = Router::compile(table());
        let rows = [
            ("foo.example.com", "/api", "api-exact"),
            ("FOO.example.com:8080", "/api/", "api"),
            ("foo.example.com", "/apix", "root"),
            ("foo.example.com", "/", "root"),
            ("bar.example.com", "/w/x", "wild"),
            ("bar.example.com", "/other", "wild-default"),
            ("a.bar.example.com", "/w", "catch-all"),
            ("example.com", "/w", "catch-all"),
            ("unknown.org", "/", "catch-all"),
        ];
        for (host, path, want) in rows {
            assert_eq!(
                r.route(host, path).map(|k| k.service.to_string()),
                Some(want.to_owned()),
                "{host}{path}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn compiled_agrees_with_reference(
            host in "(foo|bar|a\\.bar|FOO)\\.example\\.com|example\\.com|x\\.org",
            path in "/(api|w|apix|)(/[a-z]{0,2})?",
        ) {
            let t = table();
            let r = Router::compile(t.clone());
            let normalized = podgate_core::model::normalize_request_host(&host);
            proptest::prop_assert_eq!(r.route(&host, &path), t.route(&normalized, &path));
        }
    }

    #[test]
    fn gateway_wildcards_match_at_any_depth_ingress_wildcards_one_label() {
        use podgate_core::model::{HttpRule, WeightedBackend};
        let rule = HttpRule::to(
            PathMatch::prefix("/"),
            vec![WeightedBackend {
                upstream: Some(key("gw")),
                weight: 1,
            }],
        );
        let mut t = RouteTable::default();
        t.hosts.insert(
            HostPattern::parse("*.gw.example.com").unwrap(),
            VirtualHost {
                rules: vec![rule],
                tls: Some("ns/gw".into()),
                ..VirtualHost::default()
            },
        );
        t.hosts.insert(
            HostPattern::parse("*.example.com").unwrap(),
            VirtualHost {
                routes: vec![Route {
                    path: PathMatch::prefix("/"),
                    upstream: key("ingress"),
                }],
                ..VirtualHost::default()
            },
        );
        let r = Router::compile(t);
        for host in [
            "a.gw.example.com",
            "a.b.gw.example.com",
            "A.B.C.GW.example.com:8443",
        ] {
            assert_eq!(r.rules(host).len(), 1, "{host}");
            assert!(
                r.route_without_rules(host, "/").is_err(),
                "{host}: the general path"
            );
            assert_eq!(
                r.tls_host(host).and_then(|h| h.tls.as_deref()),
                Some("ns/gw"),
                "{host}"
            );
        }
        // Not the bare domain; and the Ingress wildcard stays one label deep.
        assert!(r.rules("gw.example.com").is_empty());
        assert_eq!(r.route("gw.example.com", "/"), Some(&key("ingress")));
        assert_eq!(r.route("x.y.example.com", "/"), None);
        assert!(r.rules("x.y.example.com").is_empty());
    }
}
