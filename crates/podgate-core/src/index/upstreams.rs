//! One upstream from every cluster: Ingress port → Service port name → EndpointSlice
//! port → endpoints, deduplicated by address, weighted by cluster share.

use std::net::IpAddr;

use crate::model::{ClusterName, Endpoint, EndpointState, Upstream, UpstreamKey};

use super::holds::held_out;
use super::reach::{self, EndpointTarget};
use super::records::SliceEndpoint;
use super::store::ClusterStore;
use crate::model::shares::{self, ClusterWeights, ENDPOINT_SCALE};

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
    // The health check, like the Service's weights: the first cluster that sets one.
    let health_check = clusters
        .iter()
        .filter(|c| !c.expired)
        .find_map(|c| c.services.get(&service_key)?.health_check.clone());
    let weight_of = |c: &ClusterStore| chosen.map_or(c.weight, |w| w.get(&c.name));

    // Every (cluster, address, port) of the service's slices, in one vector.
    // Clusters are identified by their position (configuration order): comparing indexes
    // is cheaper than comparing names in the sort below.
    let mut found: Vec<(usize, IpAddr, u16, &SliceEndpoint)> = Vec::with_capacity(64);
    for (c, cluster) in clusters.iter().enumerate().filter(|(_, c)| !c.expired) {
        let Some(service) = cluster.services.get(&service_key) else {
            continue;
        };
        let Some(port_name) = service.port_name(&key.port) else {
            continue;
        };
        if cluster.reach.target == EndpointTarget::NodePort {
            let nodes = reach::node_endpoints(cluster, &service_key, service, &key.port);
            found.extend(
                nodes
                    .into_iter()
                    .filter(|(_, _, ep)| !held_out(held, &cluster.name, ep.state))
                    .map(|(a, p, ep)| (c, a, p, ep)),
            );
            continue;
        }
        for slice in cluster.slices_of(&service_key) {
            if let Some(&(_, port)) = slice.ports.iter().find(|(n, _)| n == port_name) {
                // Starting endpoints of gated pods whose containers are ready count.
                let gated = slice
                    .starting
                    .iter()
                    .filter(|ep| cluster.gated.counts(ep.address));
                found.extend(
                    slice
                        .endpoints
                        .iter()
                        .chain(gated)
                        // The routability guard: what the LB cannot reach is left out.
                        .filter(|ep| cluster.reach.routable(ep.address))
                        .filter(|ep| !held_out(held, &cluster.name, ep.state))
                        .map(|ep| (c, ep.address, port, ep)),
                );
            }
        }
    }
    // An endpoint may sit in two slices for a moment while it moves: keep one.
    // Active sorts before Draining, so the Active copy stays.
    found.sort_unstable_by_key(|&(c, address, port, ep)| (c, address, port, ep.state));
    found.dedup_by_key(|&mut (c, address, port, _)| (c, address, port));

    // Only clusters with an Active endpoint take a share: the others' share goes to
    // them (failover).
    let mut active: Vec<(ClusterName, u32)> = Vec::new();
    let mut last_counted = None;
    for &(c, _, _, ep) in &found {
        if ep.state == EndpointState::Active && last_counted != Some(c) {
            last_counted = Some(c);
            active.push((clusters[c].name.clone(), weight_of(&clusters[c])));
        }
    }
    let shares = shares::shares(&active);

    let mut endpoints: Vec<Endpoint> = found
        .iter()
        .map(|&(c, address, port, ep)| Endpoint {
            cluster: clusters[c].name.clone(),
            address,
            port,
            zone: ep.locality.as_ref().and_then(|l| l.zone.clone()),
            node: ep.locality.as_ref().and_then(|l| l.node.clone()),
            state: ep.state,
            weight: 0,
        })
        .collect();
    for (cluster, share) in &shares {
        // Equal split of the cluster's share; the first endpoints take the remainder.
        let is_active = |e: &Endpoint| e.cluster == *cluster && e.state == EndpointState::Active;
        let count = endpoints.iter().filter(|e| is_active(e)).count();
        let count = u32::try_from(count).unwrap_or(u32::MAX).max(1);
        let total = share * ENDPOINT_SCALE;
        let (base, mut extra) = (total / count, total % count);
        for ep in endpoints.iter_mut().filter(|e| is_active(e)) {
            ep.weight = base + u32::from(extra > 0);
            extra = extra.saturating_sub(1);
        }
    }
    Upstream {
        health_check,
        key: key.clone(),
        shares,
        endpoints,
    }
}
