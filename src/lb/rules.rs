//! Gateway API rules (contract version 2) for an LB whose adapter speaks only Ingress
//! routes (HAProxy, Caddy): a host whose rules say no more than an Ingress path can —
//! a path match, one upstream, no method, header or query match, no filter — is
//! rendered as Ingress routes; any other host with rules is left out whole, so a route
//! is never served differently from what it says (so is a wildcard host with rules:
//! the specification's `*.example.com` matches at any depth, these LBs one label).
//! Ingress hosts are untouched.
//!
//! Same answers: for path-only rules the specification's order (an Exact path first,
//! then the longest prefix) and the Ingress order (the longest path first, Exact before
//! Prefix at equal length) pick the same rule, because an Exact path `p` matches only
//! `p`, which no longer prefix matches.

use podgate_core::model::{HostPattern, HttpRule, Route, RouteTable, UpstreamKey, VirtualHost};

/// `table` as an Ingress-only LB can serve it; the hosts left out, by name.
pub(crate) fn as_ingress_routes(mut table: RouteTable) -> (RouteTable, Vec<String>) {
    let mut left_out = Vec::new();
    table.hosts.retain(|host, vhost| {
        let Some(routes) = as_routes(Some(host), vhost) else {
            left_out.push(host.as_str().to_owned());
            return false;
        };
        set_routes(vhost, routes);
        true
    });
    if let Some(vhost) = &mut table.any_host {
        if let Some(routes) = as_routes(None, vhost) {
            set_routes(vhost, routes);
        } else {
            left_out.push("(any host)".to_owned());
            table.any_host = None;
        }
    }
    (table, left_out)
}

/// Whether an Ingress-only LB leaves this host out (`host`: `None` for rules without
/// a host).
pub(crate) fn left_out(host: Option<&HostPattern>, vhost: &VirtualHost) -> bool {
    as_routes(host, vhost).is_none()
}

/// What an adapter that cannot serve rules renders, with a warning naming the hosts
/// left out.
pub(crate) fn without_rules(lb: &str, table: RouteTable) -> RouteTable {
    let (table, left_out) = as_ingress_routes(table);
    if !left_out.is_empty() {
        crate::logging::warn_limited!(
            lb,
            hosts = %left_out.join(", "),
            "this LB cannot serve these hosts' Gateway API rules; they are left out"
        );
    }
    table
}

/// A host's rules as Ingress routes (the host's own routes when it has no rules);
/// `None` when they cannot be (leave the host out).
fn as_routes(host: Option<&HostPattern>, vhost: &VirtualHost) -> Option<Vec<Route>> {
    if vhost.rules.is_empty() {
        return Some(vhost.routes.clone());
    }
    // A Gateway API wildcard matches at any depth; these LBs match one label. Rules
    // are tried before a host's Ingress paths; merged into one Ingress order they would
    // not be.
    let wildcard = host.is_some_and(|h| h.wildcard_suffix().is_some());
    if wildcard || !vhost.routes.is_empty() || vhost.default_backend.is_some() {
        return None;
    }
    let mut routes: Vec<Route> = Vec::with_capacity(vhost.rules.len());
    for rule in &vhost.rules {
        let upstream = plain_upstream(rule)?;
        // The first rule for a path wins, as it would on an LB that serves rules.
        if !routes.iter().any(|r| r.path == rule.path) {
            routes.push(Route {
                path: rule.path.clone(),
                upstream: upstream.clone(),
            });
        }
    }
    routes.sort_by(|a, b| a.path.precedence(&b.path));
    Some(routes)
}

fn set_routes(vhost: &mut VirtualHost, routes: Vec<Route>) {
    vhost.routes = routes;
    vhost.rules.clear();
}

/// The one upstream of a rule that says no more than an Ingress path.
fn plain_upstream(rule: &HttpRule) -> Option<&UpstreamKey> {
    if rule.method.is_some()
        || rule.path_regex.is_some()
        || !rule.headers.is_empty()
        || !rule.query.is_empty()
        || !rule.filters.is_empty()
    {
        return None;
    }
    let mut weighted = rule.backends.iter().filter(|b| b.weight > 0);
    let only = weighted.next()?;
    if weighted.next().is_some() {
        return None;
    }
    only.upstream.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{HostPattern, NameValue, PathMatch, PortRef, WeightedBackend};

    fn key(s: &str) -> UpstreamKey {
        UpstreamKey::new("ns", s, PortRef::Number(80))
    }

    fn rule(path: PathMatch, to: &[(&str, u32)]) -> HttpRule {
        HttpRule::to(
            path,
            to.iter()
                .map(|(s, w)| WeightedBackend {
                    upstream: (!s.is_empty()).then(|| key(s)),
                    weight: *w,
                })
                .collect(),
        )
    }

    fn host(rules: Vec<HttpRule>) -> VirtualHost {
        VirtualHost {
            rules,
            ..VirtualHost::default()
        }
    }

    #[test]
    fn path_only_rules_become_routes_and_anything_more_is_left_out_whole() {
        let mut header = rule(PathMatch::prefix("/"), &[("a", 1)]);
        header.headers = vec![NameValue {
            name: "x".into(),
            value: "1".into(),
        }];
        let mut t = RouteTable::default();
        let hosts = [
            (
                "plain.example.com",
                host(vec![
                    rule(PathMatch::exact("/a"), &[("exact", 1)]),
                    rule(PathMatch::prefix("/a/b"), &[("long", 1), ("zero", 0)]),
                    rule(PathMatch::prefix("/a/b"), &[("later", 1)]),
                    rule(PathMatch::prefix("/"), &[("root", 1)]),
                ]),
            ),
            ("header.example.com", host(vec![header])),
            (
                "split.example.com",
                host(vec![rule(PathMatch::prefix("/"), &[("a", 1), ("b", 1)])]),
            ),
            (
                "broken.example.com",
                host(vec![rule(PathMatch::prefix("/"), &[("", 1)])]),
            ),
        ];
        for (h, v) in hosts {
            t.hosts.insert(HostPattern::parse(h).unwrap(), v);
        }
        let mut mixed = host(vec![rule(PathMatch::prefix("/"), &[("a", 1)])]);
        mixed.routes.push(Route {
            path: PathMatch::prefix("/api"),
            upstream: key("api"),
        });
        t.hosts
            .insert(HostPattern::parse("mixed.example.com").unwrap(), mixed);
        t.hosts.insert(
            HostPattern::parse("*.wild.example.com").unwrap(),
            host(vec![rule(PathMatch::prefix("/"), &[("a", 1)])]),
        );
        let reference = t.clone();
        let (rendered, mut left_out) = as_ingress_routes(t);
        left_out.sort();
        assert_eq!(
            left_out,
            [
                "*.wild.example.com",
                "broken.example.com",
                "header.example.com",
                "mixed.example.com",
                "split.example.com"
            ]
        );
        // The converted host answers as the rules would (first match in order).
        for path in ["/a", "/a/", "/a/b", "/a/b/c", "/ab", "/"] {
            let want = reference.hosts[&HostPattern::parse("plain.example.com").unwrap()]
                .rules
                .iter()
                .find(|r| r.path.matches(path))
                .and_then(|r| r.backends[0].upstream.clone());
            assert_eq!(
                rendered.route("plain.example.com", path).cloned(),
                want,
                "{path}"
            );
        }
    }
}
