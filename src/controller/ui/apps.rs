//! `GET /v1/apps?q=&page=&per_page=`: host → path → upstream → pods, filtered and paged
//! on the server so that the page stays small at 5,000 upstreams and 150,000 endpoints.
//! `q` matches (case-insensitively, every word) host, namespace, service, upstream,
//! pod IP, pod name (gated pods), cluster, node and zone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use super::super::admin::AdminState;
use crate::sync::{Item, TargetState};
use podgate_core::model::{EndpointState, HostPattern, Upstream, UpstreamKey};

const PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 200;

#[derive(Serialize)]
pub(crate) struct AppsPage {
    /// Upstreams matching `q`, over every page.
    pub(crate) total: usize,
    pub(crate) page: usize,
    pub(crate) per_page: usize,
    pub(crate) apps: Vec<App>,
}

/// One upstream and what routes to it.
#[derive(Serialize)]
pub(crate) struct App {
    pub(crate) upstream: String,
    pub(crate) namespace: String,
    pub(crate) service: String,
    /// `host` + `path` (`Exact`/`Prefix`) of every rule routing here; `*` for rules
    /// without a host, `default` for default backends.
    pub(crate) routes: Vec<RouteRef>,
    /// Per-mille of requests per cluster.
    pub(crate) shares: BTreeMap<String, u32>,
    pub(crate) health_check: Option<String>,
    /// Per LB target: `registered`, `refused`, or the target's state.
    pub(crate) targets: BTreeMap<String, String>,
    pub(crate) pods: Vec<PodRow>,
}

#[derive(Serialize)]
pub(crate) struct RouteRef {
    pub(crate) host: String,
    pub(crate) path: String,
}

#[derive(Serialize)]
pub(crate) struct PodRow {
    pub(crate) cluster: String,
    /// Known for pods behind podgate's readiness gate.
    pub(crate) name: Option<String>,
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    pub(crate) node: Option<String>,
    pub(crate) zone: Option<String>,
    /// `active` or `draining`.
    pub(crate) state: &'static str,
    pub(crate) weight: u32,
    /// Percent of the upstream's new requests this pod gets.
    pub(crate) probability: f64,
    /// The readiness gate's view of the pod, when it carries the gate.
    pub(crate) gate: Option<&'static str>,
    /// What each built-in proxy target sees of it now (`live.rs`).
    pub(crate) live: Vec<super::live::LiveRow>,
}

/// The query string's `q`, `page` (from 1) and `per_page`.
pub(crate) fn query(raw: Option<&str>) -> (String, usize, usize) {
    let (mut q, mut page, mut per_page) = (String::new(), 1, PER_PAGE);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "q" => q = v.into_owned(),
            "page" => page = v.parse().unwrap_or(1).max(1),
            "per_page" => per_page = v.parse().unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE),
            _ => {}
        }
    }
    (q, page, per_page)
}

pub(crate) async fn apps(state: &AdminState, q: &str, page: usize, per_page: usize) -> AppsPage {
    let snapshot = state.desired.snapshot();
    let table = snapshot.route_table();
    let mut routes = routes_by_upstream(&table);
    let names: HashMap<(String, IpAddr), (String, &'static str)> = gated_names(state);
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let upstreams = snapshot.upstream_list();
    let matching: Vec<&std::sync::Arc<Upstream>> = upstreams
        .iter()
        .filter(|u| {
            words.iter().all(|w| {
                matches(u, routes.get(&u.key), &names, w)
                    // An address the LB does not get (unroutable, held) is found too.
                    || (w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
                        && state.desired.read(|i| i.left_out(&u.key)).iter().any(|l| {
                            l.address.to_string().contains(w.as_str())
                        }))
            })
        })
        .collect();
    let total = matching.len();
    let targets = state.targets();
    let shown: Vec<&std::sync::Arc<Upstream>> = matching
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let keys: Vec<UpstreamKey> = shown.iter().map(|u| u.key.clone()).collect();
    let mut live = state.live.read(&keys).await;
    let apps = shown
        .into_iter()
        .map(|u| {
            let target_states = targets
                .iter()
                .map(|t| {
                    let refused = t
                        .quarantined
                        .iter()
                        .any(|q| matches!(&q.item, Item::Upstream(k) if *k == u.key));
                    let s = if refused {
                        "refused".to_owned()
                    } else if t.state == TargetState::InSync {
                        "registered".to_owned()
                    } else {
                        format!("{:?}", t.state).to_lowercase()
                    };
                    (t.name.clone(), s)
                })
                .collect();
            App {
                upstream: u.key.to_string(),
                namespace: u.key.namespace.to_string(),
                service: u.key.service.to_string(),
                routes: routes.remove(&u.key).unwrap_or_default(),
                shares: u.shares.iter().map(|(c, s)| (c.to_string(), *s)).collect(),
                health_check: u.health_check.as_ref().map(ToString::to_string),
                targets: target_states,
                pods: {
                    let mut rows = pods(u, &names, &mut live);
                    rows.extend(left_out(state, u, &names));
                    rows
                },
            }
        })
        .collect();
    AppsPage {
        total,
        page,
        per_page,
        apps,
    }
}

/// Every upstream's routes: Ingress paths, default backends and Gateway API rules.
fn routes_by_upstream(
    table: &podgate_core::model::RouteTable,
) -> HashMap<UpstreamKey, Vec<RouteRef>> {
    let mut routes: HashMap<UpstreamKey, Vec<RouteRef>> = HashMap::new();
    let mut add = |host: &str, vhost: &podgate_core::model::VirtualHost| {
        for r in &vhost.routes {
            routes
                .entry(r.upstream.clone())
                .or_default()
                .push(RouteRef {
                    host: host.to_owned(),
                    path: r.path.to_string(),
                });
        }
        if let Some(d) = &vhost.default_backend {
            routes.entry(d.clone()).or_default().push(RouteRef {
                host: host.to_owned(),
                path: "default backend".to_owned(),
            });
        }
        // Gateway API rules: the path and what else the rule matches on, per backend.
        for rule in &vhost.rules {
            let path = rule_label(rule);
            for b in rule.backends.iter().filter(|b| b.weight > 0) {
                if let Some(up) = &b.upstream {
                    routes.entry(up.clone()).or_default().push(RouteRef {
                        host: host.to_owned(),
                        path: format!("{path} ({})", rule.source),
                    });
                }
            }
        }
    };
    for (host, vhost) in &table.hosts {
        add(HostPattern::as_str(host), vhost);
    }
    if let Some(v) = &table.any_host {
        add("*", v);
    }
    if let Some(d) = &table.default_backend {
        routes.entry(d.clone()).or_default().push(RouteRef {
            host: "*".to_owned(),
            path: "default backend".to_owned(),
        });
    }
    routes
}

/// A Gateway API rule as one line: its path, method, header and query matches, and
/// who wrote it.
fn rule_label(rule: &podgate_core::model::HttpRule) -> String {
    use std::fmt::Write as _;
    let mut label = match &rule.path_regex {
        Some(re) => format!("~{re}"),
        None => rule.path.to_string(),
    };
    if let Some(m) = &rule.method {
        let _ = write!(label, " {m}");
    }
    for h in &rule.headers {
        let _ = write!(label, " [{}: {}]", h.name, h.value);
    }
    for q in &rule.query {
        let _ = write!(label, " ?{}={}", q.name, q.value);
    }
    label
}

/// Gated pods' names and states, by (cluster, address).
fn gated_names(state: &AdminState) -> HashMap<(String, IpAddr), (String, &'static str)> {
    let view = crate::gate::pod_views(&state.gates);
    view.into_iter()
        .filter_map(|p| {
            Some((
                (p.cluster, p.address?),
                (format!("{}/{}", p.namespace, p.name), p.state),
            ))
        })
        .collect()
}

/// The addresses the upstream's slices list but the LB does not get, with why as their
/// state (`unroutable`, `held`, `expired`, `not ready`).
fn left_out(
    state: &AdminState,
    u: &Upstream,
    names: &HashMap<(String, IpAddr), (String, &'static str)>,
) -> Vec<PodRow> {
    let out = state.desired.read(|i| i.left_out(&u.key));
    out.into_iter()
        .map(|l| {
            let cluster = l.cluster.to_string();
            let named = names.get(&(cluster.clone(), l.address));
            PodRow {
                name: named.map(|(n, _)| n.clone()),
                gate: named.map(|(_, s)| *s),
                cluster,
                address: l.address,
                port: 0,
                node: None,
                zone: None,
                state: l.reason,
                weight: 0,
                probability: 0.0,
                live: Vec::new(),
            }
        })
        .collect()
}

/// The pods of one upstream with their share of requests (for `explain`).
pub(crate) fn pod_rows(state: &AdminState, u: &Upstream) -> Vec<PodRow> {
    pods(u, &gated_names(state), &mut HashMap::new())
}

type LiveRows = HashMap<(UpstreamKey, IpAddr, u16), Vec<super::live::LiveRow>>;

fn pods(
    u: &Upstream,
    names: &HashMap<(String, IpAddr), (String, &'static str)>,
    live: &mut LiveRows,
) -> Vec<PodRow> {
    let share_of = |cluster: &str| {
        u.shares
            .iter()
            .find(|(c, _)| c.as_str() == cluster)
            .map_or(0, |(_, s)| *s)
    };
    // Active endpoints per cluster, counted once (not once per endpoint).
    let mut active: HashMap<&str, usize> = HashMap::new();
    for e in u
        .endpoints
        .iter()
        .filter(|e| e.state == EndpointState::Active)
    {
        *active.entry(e.cluster.as_str()).or_default() += 1;
    }
    let active_in = |cluster: &str| active.get(cluster).copied().unwrap_or(0);
    u.endpoints
        .iter()
        .map(|e| {
            let cluster = e.cluster.to_string();
            let named = names.get(&(cluster.clone(), e.address));
            let probability = match e.state {
                EndpointState::Active => {
                    f64::from(share_of(&cluster))
                        / 10.0
                        / f64::from(u32::try_from(active_in(&cluster).max(1)).unwrap_or(u32::MAX))
                }
                EndpointState::Draining => 0.0,
            };
            PodRow {
                name: named.map(|(n, _)| n.clone()),
                gate: named.map(|(_, s)| *s),
                cluster,
                address: e.address,
                port: e.port,
                node: e.node.as_ref().map(ToString::to_string),
                zone: e.zone.as_ref().map(ToString::to_string),
                state: match e.state {
                    EndpointState::Active => "active",
                    EndpointState::Draining => "draining",
                },
                weight: e.weight,
                probability: (probability * 10.0).round() / 10.0,
                live: live
                    .remove(&(u.key.clone(), e.address, e.port))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn matches(
    u: &Upstream,
    routes: Option<&Vec<RouteRef>>,
    names: &HashMap<(String, IpAddr), (String, &'static str)>,
    word: &str,
) -> bool {
    let has = |s: &str| s.to_lowercase().contains(word);
    has(&u.key.to_string())
        || routes.is_some_and(|rs| rs.iter().any(|r| has(&r.host)))
        || u.endpoints.iter().any(|e| {
            has(&e.address.to_string())
                || has(e.cluster.as_str())
                || e.node.as_deref().is_some_and(has)
                || e.zone.as_deref().is_some_and(has)
                || names
                    .get(&(e.cluster.to_string(), e.address))
                    .is_some_and(|(n, _)| has(n))
        })
}
