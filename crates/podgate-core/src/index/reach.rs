//! What the LB can reach in each cluster: the routability guard (routable CIDRs) and
//! the target type (pod IPs, or node address + the Service's NodePort).
//!
//! Owns: the per-cluster [`Reach`] record, the filter that keeps unroutable addresses
//! out of upstreams, the node endpoints of a `nodeport` cluster, and the diagnostics
//! that report what was left out. Must never register an address outside a cluster's
//! routable CIDRs, and never treat "not known yet" as "everything is routable".

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{ClusterName, EndpointState, PortRef};

use super::records::{ObjectKey, ServiceRecord, SliceEndpoint};
use super::store::ClusterStore;
use super::{Changes, Diagnostic, Dirty, Index, Kind, ObjectRef, Report};

/// What podgate registers for a cluster's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointTarget {
    /// Pod IP + the EndpointSlice port (default).
    #[default]
    Pod,
    /// Address of every Ready node + the Service port's `nodePort`, for a cluster whose
    /// pod IPs the LB cannot reach.
    #[serde(rename = "nodeport")]
    NodePort,
}

/// How many addresses one diagnostic names at most.
const NAMED: usize = 5;

/// One cluster's reachability settings and its Ready nodes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reach {
    /// `None`: no guard, every address is routable. `Some(empty)`: nothing is (e.g.
    /// kube-ovn Subnets not listed yet).
    pub(crate) routable: Option<Vec<IpNet>>,
    pub(crate) target: EndpointTarget,
    /// Ready nodes' addresses, as endpoints (Active, node name set), sorted.
    pub(crate) nodes: Vec<SliceEndpoint>,
}

impl Reach {
    /// Whether this cluster's endpoints can be reported (a guard or node ports): then
    /// a slice change may change the diagnostics even when no upstream changes.
    pub(crate) fn reports(&self) -> bool {
        self.routable.is_some() || self.target == EndpointTarget::NodePort
    }

    /// Whether the LB can reach `address` under this cluster's guard.
    pub(crate) fn routable(&self, address: IpAddr) -> bool {
        self.routable
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|n| n.contains(&address)))
    }
}

/// The `nodePort` of the Service port an upstream names.
fn node_port(service: &ServiceRecord, port: &PortRef) -> Option<u16> {
    service
        .ports
        .iter()
        .find(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(name) => p.name == *name,
        })?
        .node_port
}

/// The endpoints a `nodeport` cluster contributes to an upstream: every routable Ready
/// node at the Service's `nodePort`, but only while the Service has an Active endpoint
/// in that cluster (otherwise the nodes would forward into nothing, and failover must
/// move the share away).
pub(crate) fn node_endpoints<'a>(
    cluster: &'a ClusterStore,
    service_key: &'a ObjectKey,
    service: &ServiceRecord,
    port: &PortRef,
) -> Vec<(IpAddr, u16, &'a SliceEndpoint)> {
    let Some(node_port) = node_port(service, port) else {
        return Vec::new();
    };
    let Some(port_name) = service.port_name(port) else {
        return Vec::new();
    };
    let serving = cluster.slices_of(service_key).any(|s| {
        s.ports.iter().any(|(n, _)| n == port_name)
            && s.endpoints.iter().any(|e| e.state == EndpointState::Active)
    });
    if !serving {
        return Vec::new();
    }
    cluster
        .reach
        .nodes
        .iter()
        .filter(|n| cluster.reach.routable(n.address))
        .map(|n| (n.address, node_port, n))
        .collect()
}

fn named(addresses: &[IpAddr]) -> String {
    let mut list: Vec<String> = addresses
        .iter()
        .take(NAMED)
        .map(ToString::to_string)
        .collect();
    if addresses.len() > NAMED {
        list.push(format!("and {} more", addresses.len() - NAMED));
    }
    list.join(", ")
}

impl Index {
    /// Sets (`Some`) or clears (`None`) the routable CIDRs of `cluster`. An endpoint
    /// outside them is not registered and is reported on its Service.
    pub(super) fn set_routable(
        &mut self,
        cluster: &ClusterName,
        routable: Option<Vec<IpNet>>,
    ) -> Changes {
        let c = self.cluster_index(cluster);
        let routable = routable.map(|mut nets| {
            nets.sort_unstable();
            nets.dedup();
            nets
        });
        if self.clusters[c].reach.routable == routable {
            return Changes::default();
        }
        self.clusters[c].reach.routable = routable;
        self.settle_all_upstreams()
    }

    /// Sets what `cluster`'s endpoints are registered as: pod IPs or node ports.
    pub(super) fn set_target(&mut self, cluster: &ClusterName, target: EndpointTarget) -> Changes {
        let c = self.cluster_index(cluster);
        if self.clusters[c].reach.target == target {
            return Changes::default();
        }
        self.clusters[c].reach.target = target;
        self.settle_all_upstreams()
    }

    /// Replaces `cluster`'s Ready nodes (`name`, address) — a whole list, never a delta.
    pub(super) fn set_nodes(
        &mut self,
        cluster: &ClusterName,
        nodes: &[(String, IpAddr)],
    ) -> Changes {
        let c = self.cluster_index(cluster);
        let mut records: Vec<SliceEndpoint> = nodes
            .iter()
            .map(|(name, address)| SliceEndpoint {
                address: *address,
                state: EndpointState::Active,
                locality: self.interner.locality(None, Some(name)),
            })
            .collect();
        records.sort_unstable_by_key(|r| r.address);
        records.dedup_by(|a, b| a.address == b.address);
        if self.clusters[c].reach.nodes == records {
            return Changes::default();
        }
        self.clusters[c].reach.nodes = records;
        if self.clusters[c].reach.target == EndpointTarget::Pod {
            return Changes::default();
        }
        self.settle_all_upstreams()
    }

    fn settle_all_upstreams(&mut self) -> Changes {
        let dirty = Dirty {
            upstreams: self.upstream_refs.keys().cloned().collect(),
            diagnostics: true,
            ..Dirty::default()
        };
        let mut changes = self.settle(dirty);
        changes.diagnostics = true;
        changes
    }

    /// What the guard and the target type left out, on the Services podgate routes to.
    pub(crate) fn reach_reports(&self) -> Vec<Report> {
        let mut out = Vec::new();
        for store in &self.clusters {
            let reach = &store.reach;
            // The common case costs nothing: no guard, pod IPs.
            if !reach.reports() {
                continue;
            }
            for (key, upstreams) in &self.service_upstreams {
                let Some(service) = store.services.get(key) else {
                    continue;
                };
                let object = ObjectRef {
                    cluster: store.name.clone(),
                    kind: Kind::Service,
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                };
                let mut report = |d: Diagnostic| {
                    out.push(Report {
                        object: object.clone(),
                        diagnostic: d,
                    });
                };
                let addresses: Vec<IpAddr> = match reach.target {
                    EndpointTarget::Pod => store
                        .slices_of(key)
                        .flat_map(|s| &s.endpoints)
                        .map(|e| e.address)
                        .collect(),
                    EndpointTarget::NodePort => {
                        for up in upstreams {
                            if node_port(service, &up.port).is_none() {
                                report(Diagnostic::new(
                                    "NoNodePort",
                                    format!(
                                        "cluster {} registers node ports, but port {} of Service {}/{} has no nodePort",
                                        store.name, up.port, key.0, key.1
                                    ),
                                ));
                            }
                        }
                        reach.nodes.iter().map(|n| n.address).collect()
                    }
                };
                let mut outside: Vec<IpAddr> = addresses
                    .into_iter()
                    .filter(|a| !reach.routable(*a))
                    .collect();
                outside.sort_unstable();
                outside.dedup();
                if !outside.is_empty() {
                    let what = match reach.target {
                        EndpointTarget::Pod => "endpoint",
                        EndpointTarget::NodePort => "node",
                    };
                    report(Diagnostic::new(
                        "UnroutableEndpoint",
                        format!(
                            "{} {what} address(es) outside the routable CIDRs of cluster {} not registered: {}",
                            outside.len(),
                            store.name,
                            named(&outside)
                        ),
                    ));
                }
            }
        }
        out
    }
}
