//! One upstream from every cluster: Ingress port → Service port name → EndpointSlice
//! port → endpoints, deduplicated by address, weighted by cluster share.

use std::net::IpAddr;

use crate::model::{ClusterName, Endpoint, EndpointState, Upstream, UpstreamKey};

use super::holds::held_out;
use super::records::SliceEndpoint;
use super::store::ClusterStore;
use super::weights::{self, ClusterWeights, ENDPOINT_SCALE};

/// Computes the desired upstream. Weights, strongest first: run-time weights for this
/// application, the Service annotation (first cluster in configuration order that has
/// one), the annotation of the oldest referencing Ingress that has one, the cluster's
/// configured (or run-time global) weight. Expired clusters contribute nothing; the
/// Active endpoints of `held` clusters are left out (hold-down).
pub(crate) fn compute(
    key: &UpstreamKey,
    clusters: &[ClusterStore],
    app_weights: Option<&ClusterWeights>,
    ingress_weights: Option<&ClusterWeights>,
    held: &[ClusterName],
) -> Upstream {
    let service_key = (key.namespace.clone(), key.service.clone());
    let service_weights = clusters
        .iter()
        .find_map(|c| c.services.get(&service_key)?.weights.as_ref());
    let chosen = app_weights.or(service_weights).or(ingress_weights);
    let weight_of = |c: &ClusterStore| chosen.map_or(c.weight, |w| w.get(&c.name));

    // Every (cluster, address, port) of the service's slices, in one vector.
    let mut found: Vec<(&ClusterStore, IpAddr, u16, &SliceEndpoint)> = Vec::new();
    for cluster in clusters.iter().filter(|c| !c.expired) {
        let Some(port_name) = cluster
            .services
            .get(&service_key)
            .and_then(|s| s.port_name(&key.port))
        else {
            continue;
        };
        for slice in cluster.slices_of(&service_key) {
            if let Some(&(_, port)) = slice.ports.iter().find(|(n, _)| n == port_name) {
                found.extend(
                    slice
                        .endpoints
                        .iter()
                        .filter(|ep| !held_out(held, &cluster.name, ep.state))
                        .map(|ep| (cluster, ep.address, port, ep)),
                );
            }
        }
    }
    // An endpoint may sit in two slices for a moment while it moves: keep one.
    // Active sorts before Draining, so the Active copy stays.
    found.sort_unstable_by(|a, b| {
        (&a.0.name, a.1, a.2, a.3.state).cmp(&(&b.0.name, b.1, b.2, b.3.state))
    });
    found.dedup_by(|a, b| a.0.name == b.0.name && a.1 == b.1 && a.2 == b.2);

    // Only clusters with an Active endpoint take a share: the others' share goes to
    // them (failover).
    let mut active: Vec<(ClusterName, u32)> = Vec::new();
    for (cluster, _, _, ep) in &found {
        let counted = active.last().is_some_and(|(c, _)| *c == cluster.name);
        if ep.state == EndpointState::Active && !counted {
            active.push((cluster.name.clone(), weight_of(cluster)));
        }
    }
    let shares = weights::shares(&active);

    let mut endpoints: Vec<Endpoint> = found
        .iter()
        .map(|(cluster, address, port, ep)| Endpoint {
            cluster: cluster.name.clone(),
            address: *address,
            port: *port,
            zone: ep.zone.clone(),
            node: ep.node.clone(),
            state: ep.state,
            weight: 0,
        })
        .collect();
    for (cluster, share) in &shares {
        // Equal split of the cluster's share; the first endpoints take the remainder.
        let mut active: Vec<&mut Endpoint> = endpoints
            .iter_mut()
            .filter(|e| e.cluster == *cluster && e.state == EndpointState::Active)
            .collect();
        let count = u32::try_from(active.len()).unwrap_or(u32::MAX).max(1);
        let total = share * ENDPOINT_SCALE;
        let (base, mut extra) = (total / count, total % count);
        for ep in &mut active {
            ep.weight = base + u32::from(extra > 0);
            extra = extra.saturating_sub(1);
        }
    }
    Upstream {
        key: key.clone(),
        shares,
        endpoints,
    }
}
