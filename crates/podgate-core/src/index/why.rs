//! "Why is this pod (not) in the LB?": every slice that lists an address, what it says
//! about it, and what the Index made of it. Computed on demand by scanning the slices
//! (about a millisecond at 150,000 endpoints), for the admin view and `podgate why`.

use std::net::IpAddr;

use serde::Serialize;

use super::Index;
use super::records::SliceEndpoint;
use crate::model::{ClusterName, EndpointState, UpstreamKey};

/// One slice's entry for the address, and its fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressFinding {
    pub cluster: ClusterName,
    /// `namespace/name` of the EndpointSlice.
    pub slice: String,
    /// `namespace/name` of its Service.
    pub service: String,
    /// What the slice says: `ready`, `terminating`, `not ready`, or
    /// `not ready (gated, containers ready)` for a pod only podgate's gate holds back.
    pub condition: &'static str,
    /// Within the cluster's routability guard (`routable_cidrs` or kube-ovn Subnets).
    pub routable: bool,
    /// The guard's networks (`None`: no guard, every address is routable).
    pub routable_cidrs: Option<Vec<String>>,
    /// The cluster was stale past its `stale_ttl`: its endpoints are withdrawn.
    pub expired: bool,
    /// Every upstream podgate routes to the Service, with the address's state there
    /// (`None`: left out of it).
    pub upstreams: Vec<UpstreamFate>,
    /// Upstreams in which the cluster's share is held down after a recovery.
    pub held: Vec<UpstreamKey>,
}

/// The address's state in one upstream; `None`: left out of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamFate {
    pub upstream: UpstreamKey,
    pub state: Option<EndpointState>,
}

impl Index {
    /// Every slice entry for `address`, in every cluster (or only `cluster`).
    pub fn why_address(
        &self,
        cluster: Option<&ClusterName>,
        address: IpAddr,
    ) -> Vec<AddressFinding> {
        let holds = self.holds();
        let mut out = Vec::new();
        for store in self
            .clusters
            .iter()
            .filter(|s| cluster.is_none_or(|c| *c == s.name))
        {
            for ((ns, name), slice) in &store.slices {
                let found = |eps: &[SliceEndpoint]| eps.iter().any(|e| e.address == address);
                let condition =
                    if let Some(e) = slice.endpoints.iter().find(|e| e.address == address) {
                        match e.state {
                            EndpointState::Active => "ready",
                            EndpointState::Draining => "terminating",
                        }
                    } else if found(&slice.starting) {
                        if store.gated.counts(address) {
                            "not ready (gated, containers ready)"
                        } else {
                            "not ready"
                        }
                    } else {
                        continue;
                    };
                let service_key = (ns.clone(), slice.service.clone());
                let upstreams: Vec<UpstreamFate> = self
                    .service_upstreams
                    .get(&service_key)
                    .into_iter()
                    .flatten()
                    .map(|key| {
                        let state = self.upstream(key).and_then(|u| {
                            u.endpoints
                                .iter()
                                .find(|e| e.address == address && e.cluster == store.name)
                                .map(|e| e.state)
                        });
                        UpstreamFate {
                            upstream: key.clone(),
                            state,
                        }
                    })
                    .collect();
                let held = holds
                    .iter()
                    .filter(|h| {
                        h.cluster == store.name
                            && upstreams.iter().any(|f| f.upstream == h.upstream)
                    })
                    .map(|h| h.upstream.clone())
                    .collect();
                out.push(AddressFinding {
                    cluster: store.name.clone(),
                    slice: format!("{ns}/{name}"),
                    service: format!("{ns}/{}", slice.service),
                    condition,
                    routable: store.reach.routable(address),
                    routable_cidrs: store
                        .reach
                        .routable
                        .as_ref()
                        .map(|nets| nets.iter().map(ToString::to_string).collect()),
                    expired: store.expired,
                    upstreams,
                    held,
                });
            }
        }
        out.sort_by(|a, b| (&a.cluster, &a.slice).cmp(&(&b.cluster, &b.slice)));
        out
    }
}

impl Index {
    /// The Ingresses that claim one route entry — `path` of `scope`, or with `None` the
    /// scope's default backend — the winner (oldest) first, as `namespace/name in
    /// cluster`. The others lost the conflict.
    pub fn route_claimants(
        &self,
        scope: &super::RouteScope,
        path: Option<&crate::model::PathMatch>,
    ) -> Vec<String> {
        let Some(claims) = self.scopes.get(scope) else {
            return Vec::new();
        };
        let mut owners: Vec<&super::claims::Owner> = claims
            .routes
            .iter()
            .filter(|c| c.path.as_ref() == path)
            .map(|c| &c.owner)
            .collect();
        owners.sort();
        owners.dedup();
        owners.iter().map(ToString::to_string).collect()
    }
}

/// An address a Service's slices list that its upstream leaves out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub cluster: ClusterName,
    pub address: IpAddr,
    /// `unroutable` (outside the cluster's routable networks), `held` (the cluster's
    /// share is held down), `expired` (stale past `stale_ttl`), `not ready`.
    pub reason: &'static str,
}

impl Index {
    /// What the slices of `key`'s Service list that the upstream does not hold.
    pub fn left_out(&self, key: &UpstreamKey) -> Vec<LeftOut> {
        let upstream = self.upstream(key);
        let holds = self.holds();
        let service = (key.namespace.clone(), key.service.clone());
        let mut out = Vec::new();
        for store in &self.clusters {
            let Some(record) = store.services.get(&service) else {
                continue;
            };
            let Some(port) = record.port_name(&key.port) else {
                continue;
            };
            let held = holds
                .iter()
                .any(|h| h.upstream == *key && h.cluster == store.name);
            for slice in store.slices_of(&service) {
                if !slice.ports.iter().any(|(n, _)| n == port) {
                    continue;
                }
                let listed = slice.endpoints.iter().map(|e| (e, false));
                let starting = slice.starting.iter().map(|e| (e, true));
                for (e, is_starting) in listed.chain(starting) {
                    let held_here = upstream.as_ref().is_some_and(|u| {
                        u.endpoints
                            .iter()
                            .any(|x| x.address == e.address && x.cluster == store.name)
                    });
                    if held_here {
                        continue;
                    }
                    let reason = if store.expired {
                        "expired"
                    } else if !store.reach.routable(e.address) {
                        "unroutable"
                    } else if is_starting && !store.gated.counts(e.address) {
                        "not ready"
                    } else if held {
                        "held"
                    } else {
                        continue;
                    };
                    out.push(LeftOut {
                        cluster: store.name.clone(),
                        address: e.address,
                        reason,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.cluster, a.address).cmp(&(&b.cluster, b.address)));
        out.dedup();
        out
    }
}
