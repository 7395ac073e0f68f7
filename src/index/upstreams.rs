//! One upstream from every cluster: Ingress port → Service port name → EndpointSlice
//! port → endpoints, deduplicated by address, weighted by cluster share.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{ClusterName, Endpoint, EndpointState, Upstream, UpstreamKey};

use super::store::ClusterStore;
use super::weights::{self, ClusterWeights, ENDPOINT_SCALE};

/// Computes the desired upstream. Weights, strongest first: run-time weights for this
/// application, the Service annotation (first cluster in configuration order that has
/// one), the annotation of the oldest referencing Ingress that has one, the cluster's
/// configured (or run-time global) weight.
pub(crate) fn compute(
    key: &UpstreamKey,
    clusters: &[ClusterStore],
    app_weights: Option<&ClusterWeights>,
    ingress_weights: Option<&ClusterWeights>,
) -> Upstream {
    let service_key = (key.namespace.clone(), key.service.clone());
    let service_weights = clusters
        .iter()
        .find_map(|c| c.services.get(&service_key)?.weights.as_ref());
    let weight_of = |c: &ClusterStore| match app_weights.or(service_weights).or(ingress_weights) {
        Some(w) => w.get(&c.name),
        None => c.weight,
    };

    let mut per_cluster: Vec<(&ClusterName, u32, Vec<Endpoint>)> = Vec::new();
    for cluster in clusters {
        let Some(service) = cluster.services.get(&service_key) else {
            continue;
        };
        let Some(port_name) = service.port_name(&key.port) else {
            continue;
        };
        // Dedupe by address across slices: an endpoint may sit in two slices for a
        // moment while it moves; Active wins over Draining.
        let mut found: BTreeMap<(IpAddr, u16), &super::records::SliceEndpoint> = BTreeMap::new();
        for slice in cluster.slices_of(&service_key) {
            let Some(&(_, port)) = slice.ports.iter().find(|(n, _)| n == port_name) else {
                continue;
            };
            for ep in &slice.endpoints {
                found
                    .entry((ep.address, port))
                    .and_modify(|seen| {
                        if ep.state == EndpointState::Active {
                            *seen = ep;
                        }
                    })
                    .or_insert(ep);
            }
        }
        if found.is_empty() {
            continue;
        }
        let endpoints = found
            .into_iter()
            .map(|((address, port), ep)| Endpoint {
                cluster: cluster.name.clone(),
                address,
                port,
                zone: ep.zone.clone(),
                node: ep.node.clone(),
                state: ep.state,
                weight: 0,
            })
            .collect();
        per_cluster.push((&cluster.name, weight_of(cluster), endpoints));
    }
    per_cluster.sort_by(|a, b| a.0.cmp(b.0));

    // Only clusters with an Active endpoint take a share: the others' share goes to
    // them (failover).
    let active: Vec<(ClusterName, u32)> = per_cluster
        .iter()
        .filter(|(_, _, eps)| eps.iter().any(|e| e.state == EndpointState::Active))
        .map(|(c, w, _)| ((*c).clone(), *w))
        .collect();
    let shares = weights::shares(&active);

    let mut endpoints = Vec::new();
    for (cluster, _, mut eps) in per_cluster {
        let share = shares
            .iter()
            .find(|(c, _)| c == cluster)
            .map_or(0, |(_, s)| *s);
        // Equal split of the cluster's share; the first endpoints take the remainder.
        let active_count = eps
            .iter()
            .filter(|e| e.state == EndpointState::Active)
            .count();
        let total = share * ENDPOINT_SCALE;
        let count = u32::try_from(active_count).unwrap_or(u32::MAX).max(1);
        let (base, mut extra) = (total / count, total % count);
        for ep in eps.iter_mut().filter(|e| e.state == EndpointState::Active) {
            ep.weight = base + u32::from(extra > 0);
            extra = extra.saturating_sub(1);
        }
        endpoints.append(&mut eps);
    }
    Upstream {
        key: key.clone(),
        shares,
        endpoints,
    }
}
