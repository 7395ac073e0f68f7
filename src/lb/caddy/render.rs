//! Renders podgate's Caddy server (one JSON object) and reads it back.
//!
//! Owns: the shape of the `podgate` server in `apps.http.servers`: a never-matching
//! meta route (instance token, generation, epoch), a `subroute` that picks an upstream
//! by host and path (host-less Ingress rules: a host route without a host matcher,
//! after every host) and records it in the request variable `podgate_up`, one route per
//! upstream (`@id` `podgate-up-<hash>`) holding its `reverse_proxy`, and a 404. Must
//! never put a user string where Caddy interprets it: hosts go to the `host` matcher,
//! paths are regex-quoted into `path_regexp`, upstream keys are percent-encoded.
//!
//! Why `path_regexp` and not `path`: Caddy's `path` matcher is case-insensitive and
//! cleans the path, while Ingress paths are case-sensitive. `^<quoted>$` is `Exact`;
//! `^<quoted>(/.*)?$` is the element-wise `Prefix` (`/foo` or `/foo/…`).
//! Why a variable: Caddy 2.6 has no named upstreams, so each upstream lives once and
//! every route that uses it only names it.
//!
//! Weights: Caddy 2.6 has no weighted policy. Each Active endpoint is listed as many
//! times as its weight, reduced by the greatest common divisor and capped at
//! [`MAX_SLOTS`] entries per upstream, spread evenly over the list, under
//! `round_robin`. Draining endpoints are left
//! out (Caddy has no drain state); in-flight requests still finish, because Caddy
//! swaps configurations gracefully.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lb::haproxy::names::{encode_key, key_hash};
use crate::lb::owner::owner_tag;
use podgate_core::model::{PathKind, PathMatch, RouteTable, Upstream, UpstreamKey, VirtualHost};

pub(crate) const UP_VAR: &str = "podgate_up";
pub(crate) const SOURCE_VAR: &str = "podgate_src";
pub(crate) const SOURCE_VHOST_DEFAULT: &str = "vhost-default";
const SOURCE_DEFAULT: &str = "default";
const GROUP_HOSTS: &str = "podgate-hosts";
const GROUP_PATHS: &str = "podgate-paths";

/// The `@id`s of one owner's objects. Caddy's ids are global across its whole
/// configuration, so controllers sharing one Caddy need distinct ones: the anonymous
/// owner uses `podgate-server`, `podgate-meta`, `podgate-select`, `podgate-up-<hash>`;
/// owner `o1a2…` uses `podgate-o1a2…-server` and so on.
#[derive(Clone, Debug)]
pub(crate) struct Ids {
    pub(crate) server: String,
    pub(crate) meta: String,
    pub(crate) select: String,
    up_prefix: String,
}

impl Ids {
    pub(crate) fn new(owner: Option<&str>) -> Self {
        let base =
            owner_tag(owner).map_or_else(|| "podgate-".to_owned(), |t| format!("podgate-{t}-"));
        Self {
            server: format!("{base}server"),
            meta: format!("{base}meta"),
            select: format!("{base}select"),
            up_prefix: format!("{base}up-"),
        }
    }

    fn upstream(&self, key: &UpstreamKey) -> String {
        format!("{}{}", self.up_prefix, key_hash(key))
    }

    pub(crate) fn is_upstream(&self, id: &str) -> bool {
        id.starts_with(&self.up_prefix)
    }
}

/// The key of an owner's server under `apps.http.servers` when none is configured.
pub(crate) fn default_server_name(owner: Option<&str>) -> String {
    owner_tag(owner).map_or_else(|| "podgate".to_owned(), |t| format!("podgate-{t}"))
}

/// Most list entries one upstream gets for weighting.
pub(crate) const MAX_SLOTS: u32 = 100;

/// What podgate stores about itself inside Caddy's config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) instance: String,
    pub(crate) generation: u64,
    pub(crate) epoch: u64,
}

/// Go's `regexp.QuoteMeta`.
pub(crate) fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn path_pattern(p: &PathMatch) -> String {
    match p.kind {
        PathKind::Exact => format!("^{}$", quote_meta(&p.path)),
        PathKind::Prefix => format!("^{}(/.*)?$", quote_meta(&p.path)),
    }
}

/// Inverse of [`path_pattern`].
pub(crate) fn parse_pattern(pattern: &str) -> Option<PathMatch> {
    let body = pattern.strip_prefix('^')?;
    let (kind, quoted) = match body.strip_suffix("(/.*)?$") {
        Some(q) => (PathKind::Prefix, q),
        None => (PathKind::Exact, body.strip_suffix('$')?),
    };
    let mut path = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        path.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(PathMatch {
        kind,
        path: path.into(),
    })
}

/// `ip:port`, with brackets for IPv6.
pub(crate) fn dial(addr: std::net::IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How many list entries each Active endpoint gets: (dial, count).
pub(crate) fn slots(up: &Upstream) -> Vec<(String, u32)> {
    let active: Vec<_> = up.active().collect();
    if active.iter().all(|e| e.weight == 0) {
        return active
            .iter()
            .map(|e| (dial(e.address, e.port), 1))
            .collect();
    }
    let g = active.iter().map(|e| e.weight).fold(0, gcd).max(1);
    let total: u64 = active.iter().map(|e| u64::from(e.weight / g)).sum();
    let cap = u64::from(MAX_SLOTS.max(u32::try_from(active.len()).unwrap_or(u32::MAX)));
    active
        .iter()
        .filter(|e| e.weight > 0)
        .map(|e| {
            let r = u64::from(e.weight / g);
            let n = if total <= cap {
                r
            } else {
                (r * cap + total / 2) / total
            };
            (
                dial(e.address, e.port),
                u32::try_from(n.max(1)).unwrap_or(1),
            )
        })
        .collect()
}

/// A route that names the chosen upstream. Routes of one list share a `group`, so only
/// the first match runs; `terminal` cannot be used, because in Caddy it ends the whole
/// handler chain, not only the subroute. `source` tags fallbacks for `observe`.
fn select_route(key: &UpstreamKey, group: &str, source: Option<&str>) -> Value {
    let mut vars = json!({ "handler": "vars", UP_VAR: encode_key(key) });
    if let Some(s) = source {
        vars[SOURCE_VAR] = json!(s);
    }
    json!({ "group": group, "handle": [vars] })
}

/// The slots in list order: each address's entries spread evenly over the list (the
/// `k`-th of `n` entries sits at `(k + ½) / n`), because `round_robin` walks the list
/// in order: `a a a b` would send runs of requests to one pod, `a b a a` does not.
pub(crate) fn spread_slots(slots: &[(String, u32)]) -> Vec<&str> {
    let mut order: Vec<(u64, u64, usize)> = slots
        .iter()
        .enumerate()
        .flat_map(|(i, (_, n))| (0..*n).map(move |k| (2 * u64::from(k) + 1, 2 * u64::from(*n), i)))
        .collect();
    // Compare the fractions a/b by cross-multiplication (no floats); ties keep the
    // configuration order.
    order.sort_by(|(a1, b1, i1), (a2, b2, i2)| (a1 * b2).cmp(&(a2 * b1)).then(i1.cmp(i2)));
    order
        .into_iter()
        .map(|(_, _, i)| slots[i].0.as_str())
        .collect()
}

/// Caddy's active health checks for `check`. Caddy 2.6 (Debian 12) checks with GET,
/// passes 2xx only (it follows a redirect), and takes an endpoint out at its first
/// failure and back at its first pass: no method, no thresholds (docs/lb-adapters.md).
fn health_checks(check: &podgate_core::model::HealthCheck) -> Value {
    json!({
        "active": {
            "uri": &*check.path,
            "interval": format!("{}ms", check.interval_ms),
            "timeout": format!("{}ms", check.timeout_ms),
        }
    })
}

fn upstream_route(ids: &Ids, up: &Upstream) -> Value {
    let slots = slots(up);
    let list: Vec<Value> = spread_slots(&slots)
        .into_iter()
        .map(|d| json!({ "dial": d }))
        .collect();
    let handler = if list.is_empty() {
        json!({ "handler": "static_response", "status_code": 503, "body": "no endpoint\n" })
    } else {
        let mut proxy = json!({
            "handler": "reverse_proxy",
            "upstreams": list,
            "load_balancing": { "selection_policy": { "policy": "round_robin" }, "try_duration": "2s" },
        });
        if let Some(check) = &up.health_check {
            proxy["health_checks"] = health_checks(check);
        }
        proxy
    };
    json!({
        "@id": ids.upstream(&up.key),
        "match": [{ "vars": { UP_VAR: [encode_key(&up.key)] } }],
        "handle": [handler],
        "terminal": true,
    })
}

/// The whole `podgate` server object.
pub(crate) fn render_server(
    ids: &Ids,
    listen: &[SocketAddr],
    meta: &Meta,
    routes: &RouteTable,
    upstreams: &BTreeMap<UpstreamKey, Upstream>,
) -> Value {
    let mut hosts: Vec<_> = routes.hosts.iter().collect();
    // Exact hosts first: an exact host beats a wildcard.
    hosts.sort_by_key(|(h, _)| h.wildcard_suffix().is_some());
    let vhost_route = |vhost: &VirtualHost| {
        let mut paths: Vec<Value> = vhost
            .routes
            .iter()
            .map(|r| {
                let mut v = select_route(&r.upstream, GROUP_PATHS, None);
                v["match"] = json!([{ "path_regexp": { "pattern": path_pattern(&r.path) } }]);
                v
            })
            .collect();
        if let Some(d) = &vhost.default_backend {
            paths.push(select_route(d, GROUP_PATHS, Some(SOURCE_VHOST_DEFAULT)));
        } else if let Some(d) = &routes.default_backend {
            paths.push(select_route(d, GROUP_PATHS, Some(SOURCE_DEFAULT)));
        }
        json!({
            "group": GROUP_HOSTS,
            "handle": [{ "handler": "subroute", "routes": paths }],
        })
    };
    let mut select = Vec::new();
    for (host, vhost) in hosts {
        let mut route = vhost_route(vhost);
        route["match"] = json!([{ "host": [host.as_str()] }]);
        select.push(route);
    }
    // Host-less rules: the same subroute without a host matcher, after every host (the
    // group runs only the first match) and before the catch-all.
    if let Some(any) = &routes.any_host {
        select.push(vhost_route(any));
    }
    if let Some(d) = &routes.default_backend {
        select.push(select_route(d, GROUP_HOSTS, Some(SOURCE_DEFAULT)));
    }
    let meta_body = serde_json::to_string(meta).unwrap_or_default();
    let mut server_routes = vec![
        json!({
            "@id": ids.meta,
            "match": [{ "vars": { "podgate_meta": ["never"] } }],
            "handle": [{ "handler": "static_response", "body": meta_body }],
        }),
        json!({ "@id": ids.select, "handle": [{ "handler": "subroute", "routes": select }] }),
    ];
    server_routes.extend(upstreams.values().map(|u| upstream_route(ids, u)));
    server_routes.push(json!({
        "handle": [{ "handler": "static_response", "status_code": 404, "body": "no route\n" }],
    }));
    json!({
        "@id": ids.server,
        "listen": listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "automatic_https": { "disable": true },
        "routes": server_routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{ClusterName, Endpoint, EndpointState, PortRef};

    #[test]
    fn patterns_round_trip_and_quote() {
        for p in [
            PathMatch::exact("/a.b(c)"),
            PathMatch::prefix("/foo"),
            PathMatch::prefix("/"),
            PathMatch {
                kind: PathKind::Exact,
                path: "/x$^[]{}|*+?\\".into(),
            },
        ] {
            assert_eq!(parse_pattern(&path_pattern(&p)), Some(p));
        }
        assert_eq!(path_pattern(&PathMatch::prefix("/a.b")), "^/a\\.b(/.*)?$");
    }

    #[test]
    fn owners_get_their_own_ids() {
        let (anon, a, b) = (Ids::new(None), Ids::new(Some("a")), Ids::new(Some("b")));
        assert_eq!(anon.server, "podgate-server");
        let key = UpstreamKey::new("n", "s", PortRef::Number(80));
        for (x, y) in [(&anon, &a), (&a, &anon), (&a, &b)] {
            assert!(!x.is_upstream(&y.upstream(&key)));
            assert_ne!(
                (&x.server, &x.meta, &x.select),
                (&y.server, &y.meta, &y.select)
            );
        }
        assert_eq!(default_server_name(None), "podgate");
        assert_ne!(
            default_server_name(Some("a")),
            default_server_name(Some("b"))
        );
    }

    #[test]
    fn weights_become_list_entries() {
        let ep = |a: &str, w: u32, state| Endpoint {
            cluster: ClusterName::new("c"),
            address: a.parse().unwrap(),
            port: 80,
            zone: None,
            node: None,
            state,
            weight: w,
        };
        let up = Upstream {
            health_check: None,
            key: UpstreamKey::new("n", "s", PortRef::Number(80)),
            shares: vec![],
            endpoints: vec![
                ep("10.0.0.1", 750, EndpointState::Active),
                ep("10.0.0.2", 250, EndpointState::Active),
                ep("10.0.0.3", 0, EndpointState::Draining),
            ],
        };
        assert_eq!(
            slots(&up),
            vec![("10.0.0.1:80".into(), 3), ("10.0.0.2:80".into(), 1)]
        );
        // Spread over the list, not in runs.
        assert_eq!(
            spread_slots(&slots(&up)),
            vec!["10.0.0.1:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"]
        );
        let skewed = [("a".to_owned(), 2), ("b".to_owned(), 8)];
        let list = spread_slots(&skewed);
        assert_eq!(list.len(), 10);
        let gaps: Vec<usize> = list
            .iter()
            .enumerate()
            .filter(|(_, d)| **d == "a")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(gaps, vec![2, 7], "{list:?}");
    }
}
