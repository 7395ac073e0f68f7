//! Endpoint-level changes to an upstream an LB already holds ([`UpstreamPatch`]): the
//! LB contract's way to send one changed pod of a large upstream without the rest.
//!
//! Owns: computing the patch between two versions of an upstream ([`UpstreamPatch::between`])
//! and applying one ([`Upstream::patched`]), so that pusher and LB agree exactly: the
//! patched upstream equals the new version, endpoint order included. Must never guess:
//! a patch that does not fit the held upstream is refused, and the pusher sends the
//! whole upstream instead.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ClusterName, Endpoint, Upstream, UpstreamKey};

/// Changes to one upstream, applied to the version the LB holds. Endpoints are named by
/// `address:port` (unique within an upstream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPatch {
    pub key: UpstreamKey,
    /// When present, replaces the cluster shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<Vec<(ClusterName, u32)>>,
    /// Endpoints added, or changed in more than their weight (replaced whole). A new
    /// endpoint joins the endpoints of its cluster, in address and port order; its
    /// cluster must already have endpoints in the upstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert_endpoints: Vec<Endpoint>,
    /// New weights of endpoints that changed in nothing else: one pod more or less
    /// re-spreads its cluster's share over all of the cluster's endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<(SocketAddr, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_endpoints: Vec<SocketAddr>,
}

fn addr(e: &Endpoint) -> SocketAddr {
    SocketAddr::new(e.address, e.port)
}

impl UpstreamPatch {
    /// A patch of `key` that changes nothing yet.
    pub fn new(key: UpstreamKey) -> Self {
        Self {
            key,
            shares: None,
            upsert_endpoints: Vec::new(),
            weights: Vec::new(),
            remove_endpoints: Vec::new(),
        }
    }

    /// The patch that turns `old` into `new`, or `None` when only the whole upstream can
    /// say it: a cluster that had no endpoint gains one (where its endpoints go depends
    /// on the pusher's cluster order), an address moves to another cluster, or the
    /// endpoints are not grouped by cluster, or the health check changed.
    pub fn between(old: &Upstream, new: &Upstream) -> Option<Self> {
        if old.key != new.key
            || old.health_check != new.health_check
            || !grouped(&old.endpoints)
            || !grouped(&new.endpoints)
        {
            return None;
        }
        let held: HashMap<SocketAddr, &Endpoint> =
            old.endpoints.iter().map(|e| (addr(e), e)).collect();
        let mut patch = Self::new(new.key.clone());
        patch.shares = (old.shares != new.shares).then(|| new.shares.clone());
        for e in &new.endpoints {
            match held.get(&addr(e)) {
                Some(h) if *h == e => {}
                Some(h)
                    if Endpoint {
                        weight: e.weight,
                        ..(*h).clone()
                    } == *e =>
                {
                    patch.weights.push((addr(e), e.weight));
                }
                // An address now in another cluster moves: only the whole upstream says it.
                Some(h) if h.cluster != e.cluster => return None,
                Some(_) => patch.upsert_endpoints.push(e.clone()),
                None if old.endpoints.iter().any(|h| h.cluster == e.cluster) => {
                    patch.upsert_endpoints.push(e.clone());
                }
                None => return None,
            }
        }
        let wanted: std::collections::HashSet<SocketAddr> =
            new.endpoints.iter().map(addr).collect();
        patch.remove_endpoints = old
            .endpoints
            .iter()
            .map(addr)
            .filter(|a| !wanted.contains(a))
            .collect();
        // The result must be exactly `new` (order included), or the whole upstream goes.
        (old.patched(&patch).as_ref() == Ok(new)).then_some(patch)
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.shares.is_none()
            && self.upsert_endpoints.is_empty()
            && self.weights.is_empty()
            && self.remove_endpoints.is_empty()
    }
}

/// Whether each cluster's endpoints are contiguous and in address and port order (how
/// the Index orders them, whatever order the clusters come in).
fn grouped(endpoints: &[Endpoint]) -> bool {
    let mut seen: Vec<&ClusterName> = Vec::new();
    endpoints.windows(2).all(|w| {
        if w[0].cluster == w[1].cluster {
            (w[0].address, w[0].port) < (w[1].address, w[1].port)
        } else {
            seen.push(&w[0].cluster);
            !seen.contains(&&w[1].cluster)
        }
    })
}

/// Why a patch does not fit the upstream it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("patch for {patch} applied to {upstream}")]
    OtherUpstream {
        patch: UpstreamKey,
        upstream: UpstreamKey,
    },
    #[error("upstream {upstream}: no endpoint {endpoint} to {to}")]
    NoEndpoint {
        upstream: UpstreamKey,
        endpoint: SocketAddr,
        to: &'static str,
    },
    #[error(
        "upstream {upstream}: endpoint {endpoint} of cluster {cluster}, which has no endpoints here (send the whole upstream)"
    )]
    NewCluster {
        upstream: UpstreamKey,
        endpoint: SocketAddr,
        cluster: ClusterName,
    },
}

impl Upstream {
    /// This upstream with `patch` applied; an error names what does not fit (an
    /// endpoint to remove or re-weight that is not held, a new endpoint of a cluster
    /// without endpoints).
    pub fn patched(&self, patch: &UpstreamPatch) -> Result<Self, PatchError> {
        if patch.key != self.key {
            return Err(PatchError::OtherUpstream {
                patch: patch.key.clone(),
                upstream: self.key.clone(),
            });
        }
        let mut endpoints = self.endpoints.clone();
        let position = |list: &[Endpoint], a: SocketAddr| list.iter().position(|e| addr(e) == a);
        for (a, w) in &patch.weights {
            let i = position(&endpoints, *a).ok_or_else(|| PatchError::NoEndpoint {
                upstream: self.key.clone(),
                endpoint: *a,
                to: "re-weight",
            })?;
            endpoints[i].weight = *w;
        }
        for e in &patch.upsert_endpoints {
            if let Some(i) = position(&endpoints, addr(e)) {
                endpoints[i] = e.clone();
                continue;
            }
            let group: Vec<usize> = (0..endpoints.len())
                .filter(|&i| endpoints[i].cluster == e.cluster)
                .collect();
            let (Some(&first), Some(&last)) = (group.first(), group.last()) else {
                return Err(PatchError::NewCluster {
                    upstream: self.key.clone(),
                    endpoint: addr(e),
                    cluster: e.cluster.clone(),
                });
            };
            let at = (first..=last)
                .find(|&i| (endpoints[i].address, endpoints[i].port) > (e.address, e.port))
                .unwrap_or(last + 1);
            endpoints.insert(at, e.clone());
        }
        // Last: a cluster whose old endpoints all go keeps its place for the new ones.
        for a in &patch.remove_endpoints {
            let i = position(&endpoints, *a).ok_or_else(|| PatchError::NoEndpoint {
                upstream: self.key.clone(),
                endpoint: *a,
                to: "remove",
            })?;
            endpoints.remove(i);
        }
        Ok(Self {
            key: self.key.clone(),
            shares: patch.shares.clone().unwrap_or_else(|| self.shares.clone()),
            endpoints,
            health_check: self.health_check.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{EndpointState, PortRef};

    fn ep(cluster: &str, last: u8, state: EndpointState, weight: u32) -> Endpoint {
        Endpoint {
            cluster: ClusterName::new(cluster),
            address: std::net::IpAddr::from([10, 0, 0, last]),
            port: 8080,
            zone: None,
            node: None,
            state,
            weight,
        }
    }

    fn up(endpoints: Vec<Endpoint>) -> Upstream {
        Upstream {
            health_check: None,
            key: UpstreamKey::new("ns", "web", PortRef::Number(80)),
            shares: vec![(ClusterName::new("idc"), 1000)],
            endpoints,
        }
    }

    #[test]
    fn one_pod_draining_is_one_upsert_and_weights() {
        use EndpointState::{Active, Draining};
        let old = up((1..=4).map(|i| ep("idc", i, Active, 250)).collect());
        let mut new = old.clone();
        new.endpoints[1] = ep("idc", 2, Draining, 0);
        for i in [0, 2, 3] {
            new.endpoints[i].weight = 333;
        }
        let patch = UpstreamPatch::between(&old, &new).unwrap();
        assert_eq!(patch.upsert_endpoints, vec![new.endpoints[1].clone()]);
        assert_eq!(patch.weights.len(), 3);
        assert!(patch.remove_endpoints.is_empty() && patch.shares.is_none());
        assert_eq!(old.patched(&patch).unwrap(), new);
    }

    #[test]
    fn a_new_cluster_needs_the_whole_upstream() {
        let old = up(vec![ep("tke", 1, EndpointState::Active, 1000)]);
        let mut new = old.clone();
        new.endpoints
            .insert(0, ep("idc", 9, EndpointState::Active, 500));
        assert_eq!(UpstreamPatch::between(&old, &new), None);
        let mut patch = UpstreamPatch::new(old.key.clone());
        patch.upsert_endpoints.push(new.endpoints[0].clone());
        assert!(
            old.patched(&patch)
                .unwrap_err()
                .to_string()
                .contains("whole upstream")
        );
    }

    #[test]
    fn a_patch_that_does_not_fit_is_refused() {
        let old = up(vec![ep("idc", 1, EndpointState::Active, 1000)]);
        let mut patch = UpstreamPatch::new(old.key.clone());
        patch.remove_endpoints = vec!["10.0.0.7:8080".parse().unwrap()];
        assert!(
            old.patched(&patch)
                .unwrap_err()
                .to_string()
                .contains("10.0.0.7:8080")
        );
    }

    fn world() -> impl Strategy<Value = Vec<(u8, u8, bool, u32)>> {
        // (cluster 0..3, address 1..12, active, weight)
        proptest::collection::vec((0u8..3, 1u8..12, any::<bool>(), 0u32..5), 0..12)
    }

    /// The Index's order: clusters in a fixed order, then address and port; an address
    /// at most once (the Index dedupes).
    fn upstream_of(raw: &[(u8, u8, bool, u32)]) -> Upstream {
        let mut by_address = std::collections::BTreeMap::new();
        for (c, last, active, w) in raw {
            by_address.insert(*last, (*c, *active, *w));
        }
        let mut ordered: Vec<_> = by_address
            .into_iter()
            .map(|(last, (c, a, w))| (c, last, a, w))
            .collect();
        ordered.sort_unstable();
        up(ordered
            .into_iter()
            .map(|(c, last, active, w)| {
                let state = if active {
                    EndpointState::Active
                } else {
                    EndpointState::Draining
                };
                ep(["idc", "tke", "ali"][usize::from(c)], last, state, w)
            })
            .collect())
    }

    proptest! {
        #[test]
        fn a_patch_between_two_versions_turns_one_into_the_other(a in world(), b in world()) {
            let (old, new) = (upstream_of(&a), upstream_of(&b));
            if let Some(patch) = UpstreamPatch::between(&old, &new) {
                prop_assert_eq!(old.patched(&patch).unwrap(), new);
            } else {
                // Only a cluster that appears, or an address that moves to another
                // cluster, may force the whole upstream.
                let had: std::collections::HashMap<_, _> = old.endpoints.iter().map(|e| (addr(e), &e.cluster)).collect();
                let clusters: std::collections::HashSet<_> = had.values().collect();
                let forced = new.endpoints.iter().any(|e| {
                    !clusters.contains(&&e.cluster) || had.get(&addr(e)).is_some_and(|c| **c != e.cluster)
                });
                prop_assert!(forced, "no patch for {:?} → {:?}", old, new);
            }
        }
    }
}
