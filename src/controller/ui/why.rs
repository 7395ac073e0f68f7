//! "Why": `GET /v1/why?pod=ns/name` or `?ip=10.0.0.5` (optionally `&cluster=`) — why a
//! pod is or is not in the LB, in sentences, with the findings behind them; and
//! `GET /v1/explain?url=https://host/path` — which rule wins for a URL and which pods
//! would serve it with what probability. A pod named by its name is looked up in each
//! cluster's API server (for its IP and status); everything else is the Index's.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::super::admin::AdminState;
use crate::cluster::ClusterState;
use crate::sync::Item;
use podgate_core::index::{AddressFinding, RouteScope};
use podgate_core::model::{ClusterName, EndpointState, RouteExplanation};

/// What the Kubernetes API says about a pod asked for by name.
#[derive(Serialize)]
pub(crate) struct PodFacts {
    pub(crate) cluster: String,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) phase: Option<String>,
    pub(crate) ready: bool,
    pub(crate) terminating: bool,
}

#[derive(Serialize)]
pub(crate) struct Why {
    /// What was asked, as given.
    pub(crate) query: String,
    pub(crate) pods: Vec<PodFacts>,
    /// One line per reason, in the order an operator reads them.
    pub(crate) reasons: Vec<String>,
    pub(crate) findings: Vec<AddressFinding>,
}

/// The query: a pod by `namespace/name` or an address, and maybe a cluster.
pub(crate) struct WhyQuery {
    pub(crate) pod: Option<(String, String)>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) cluster: Option<String>,
}

impl WhyQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut q = Self {
            pod: None,
            ip: None,
            cluster: None,
        };
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "pod" => {
                    let (ns, name) = v
                        .split_once('/')
                        .ok_or_else(|| format!("pod {v:?}: give it as namespace/name"))?;
                    if !is_dns_name(ns) || !is_dns_name(name) {
                        return Err(format!(
                            "pod {v:?}: namespace and name are DNS names (a-z, 0-9, '-', '.')"
                        ));
                    }
                    q.pod = Some((ns.to_owned(), name.to_owned()));
                }
                "ip" => {
                    q.ip = Some(
                        v.parse()
                            .map_err(|_| format!("ip {v:?} is not an IP address"))?,
                    );
                }
                "cluster" => q.cluster = Some(v.into_owned()),
                _ => {}
            }
        }
        if q.pod.is_none() && q.ip.is_none() {
            return Err("ask for ?pod=namespace/name or ?ip=address".to_owned());
        }
        Ok(q)
    }
}

/// A Kubernetes object name (DNS subdomain): nothing else reaches the API server.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
        && !s.contains("..")
}

pub(crate) async fn why(state: &AdminState, q: WhyQuery) -> Why {
    let mut why = Vec::new();
    let mut pods = Vec::new();
    let mut addresses: Vec<(Option<String>, IpAddr)> =
        q.ip.map(|ip| (q.cluster.clone(), ip)).into_iter().collect();
    let query = match &q.pod {
        Some((ns, name)) => format!("pod {ns}/{name}"),
        None => format!(
            "address {}",
            q.ip.map(|i| i.to_string()).unwrap_or_default()
        ),
    };
    if let Some((ns, name)) = &q.pod {
        for (cluster, client) in &state.clients {
            if q.cluster.as_ref().is_some_and(|c| c != cluster) {
                continue;
            }
            let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
            match api.get_opt(name).await {
                Ok(Some(pod)) => {
                    let facts = facts(cluster, &pod);
                    if facts.ip.is_none() {
                        why.push(format!(
                            "{cluster}: the pod has no IP yet (phase {})",
                            facts.phase.as_deref().unwrap_or("unknown")
                        ));
                    }
                    if let Some(ip) = facts.ip {
                        addresses.push((Some(cluster.clone()), ip));
                    }
                    pods.push(facts);
                }
                Ok(None) => {}
                Err(e) => why.push(format!(
                    "{cluster}: could not read the pod: {}",
                    crate::logging::causes(&e)
                )),
            }
        }
        if pods.is_empty() && why.is_empty() {
            why.push(format!("no cluster has a pod {ns}/{name}"));
        }
    }
    let mut findings = Vec::new();
    for (cluster, ip) in &addresses {
        let name = cluster.as_deref().map(ClusterName::new);
        findings.extend(
            state
                .desired
                .read(|index| index.why_address(name.as_ref(), *ip)),
        );
    }
    if findings.is_empty() && !addresses.is_empty() {
        why.push("no EndpointSlice of a Service lists it: not in the LB (is it selected by a Service? is it Running?)".to_owned());
    }
    for f in &findings {
        explain_finding(state, f, &mut why);
    }
    for p in &pods {
        if p.terminating {
            why.push(format!(
                "{}: the pod is terminating: it drains, taking no new requests",
                p.cluster
            ));
        }
    }
    Why {
        query,
        pods,
        reasons: why,
        findings,
    }
}

fn facts(cluster: &str, pod: &Pod) -> PodFacts {
    let status = pod.status.as_ref();
    PodFacts {
        cluster: cluster.to_owned(),
        ip: status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok()),
        phase: status.and_then(|s| s.phase.clone()),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

fn explain_finding(state: &AdminState, f: &AddressFinding, why: &mut Vec<String>) {
    let c = &f.cluster;
    let at = format!("{c}: EndpointSlice {} (Service {})", f.slice, f.service);
    if let Some(s) = state
        .clusters
        .iter()
        .map(crate::cluster::StatusCell::get)
        .find(|s| s.name == c.as_str())
        && s.state == ClusterState::Stale
    {
        why.push(format!("{c}: the cluster is stale (its API server does not answer): podgate keeps its last-known endpoints"));
    }
    if f.expired {
        why.push(format!(
            "{c}: the cluster was stale past stale_ttl: its endpoints are withdrawn"
        ));
        return;
    }
    match f.condition {
        "not ready" => {
            why.push(format!("{at} says not ready: not registered (it joins once its readiness probe passes)"));
            return;
        }
        "not ready (gated, containers ready)" => why.push(format!(
            "{at}: containers ready, held back by podgate's readiness gate: registered, Ready once every LB holds it"
        )),
        "terminating" => why.push(format!("{at} says terminating: draining (no new requests)")),
        _ => {}
    }
    if !f.routable {
        let nets = f.routable_cidrs.as_deref().unwrap_or_default().join(", ");
        why.push(format!(
            "{c}: the address is outside the cluster's routable networks ({nets}; from routable_cidrs or kube-ovn Subnets): left out, reported as UnroutableEndpoint on the Service"
        ));
        return;
    }
    if f.upstreams.is_empty() {
        why.push(format!(
            "{at}: no podgate Ingress routes to Service {}: not in the LB",
            f.service
        ));
        return;
    }
    for u in &f.upstreams {
        let line = match u.state {
            Some(EndpointState::Active) => format!("{c}: Active in upstream {}", u.upstream),
            Some(EndpointState::Draining) => format!("{c}: draining in upstream {}", u.upstream),
            None if f.held.contains(&u.upstream) => format!(
                "{c}: held out of upstream {}: the cluster's share is held down after a recovery (hold_down)",
                u.upstream
            ),
            None => format!("{c}: left out of upstream {}", u.upstream),
        };
        why.push(line);
        for t in &state.targets {
            let t = t.lock();
            if let Some(q) = t
                .quarantined
                .iter()
                .find(|q| matches!(&q.item, Item::Upstream(k) if *k == u.upstream))
            {
                why.push(format!(
                    "target {} refuses upstream {}: {}",
                    t.name, u.upstream, q.error
                ));
            }
        }
    }
}

/// `GET /v1/explain?url=`: the route decision and the pods behind it.
#[derive(Serialize)]
pub(crate) struct Explain {
    pub(crate) url: String,
    pub(crate) path: String,
    #[serde(flatten)]
    pub(crate) route: RouteExplanation,
    /// Pods of the winning upstream with the share of requests each would get.
    pub(crate) pods: Vec<super::apps::PodRow>,
    /// The Ingresses claiming the winning entry, the winner (oldest) first; the others
    /// lost a conflict.
    pub(crate) ingresses: Vec<String>,
    /// Diagnostics that mention the host (conflicts, bad rules).
    pub(crate) diagnostics: Vec<String>,
}

pub(crate) fn explain(state: &AdminState, raw: Option<&str>) -> Result<Explain, String> {
    let url = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "url")
        .map(|(_, v)| v.into_owned())
        .ok_or("ask for ?url=https://host/path")?;
    let with_scheme = if url.contains("://") {
        url.clone()
    } else {
        format!("http://{url}")
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| format!("url {url:?}: {e}"))?;
    let host = uri
        .authority()
        .map(|a| a.host().to_owned())
        .ok_or(format!("url {url:?} has no host"))?;
    let path = uri.path().to_owned();
    let snapshot = state.desired.snapshot();
    let route = snapshot.route_table().explain(&host, &path);
    let pods = route
        .upstream
        .as_ref()
        .and_then(|k| state.desired.read(|i| i.upstream(k)))
        .map(|u| super::apps::pod_rows(state, &u))
        .unwrap_or_default();
    let diagnostics = state
        .desired
        .read(podgate_core::index::Index::diagnostics)
        .into_iter()
        .filter(|d| d.diagnostic.message.contains(&route.host))
        .map(|d| {
            format!(
                "{} {} {}/{}: {}: {}",
                d.object.cluster,
                d.object.kind,
                d.object.namespace,
                d.object.name,
                d.diagnostic.reason,
                d.diagnostic.message
            )
        })
        .collect();
    let default = route.via == "the default backend";
    let scope = match (&route.pattern, route.host_match) {
        _ if default => Some(RouteScope::Default),
        (Some(p), _) => Some(RouteScope::Host(p.clone())),
        (None, "rules without a host") => Some(RouteScope::AnyHost),
        _ => None,
    };
    let ingresses = scope
        .map(|s| {
            state
                .desired
                .read(|i| i.route_claimants(&s, route.rule.as_ref()))
        })
        .unwrap_or_default();
    Ok(Explain {
        url,
        path,
        route,
        pods,
        ingresses,
        diagnostics,
    })
}
