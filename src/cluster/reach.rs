//! Watchers for what the LB can reach in one cluster: kube-ovn `Subnet`s (the routable
//! CIDRs, for `routable_from: kube-ovn`) and Ready `Node`s (for `target: nodeport`).
//!
//! Owns: reading `spec.cidrBlock` of Subnets and the `InternalIP` of Ready Nodes, and
//! handing the Index each whole set after every change. Like the other watchers, a
//! relist is applied as one swap at `InitDone`, and a failed watch changes nothing:
//! the Index keeps the last-known set. Must never hand the Index a partial list.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::hub::{Cause, Desired};
use podgate_core::guard::{FloorGuard, Verdict};
use podgate_core::index::Input;
use podgate_core::model::ClusterName;

/// Which reachability watchers one cluster needs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReachWatch {
    /// Follow kube-ovn Subnets (`routable_from: kube-ovn`).
    pub(crate) subnets: bool,
    /// Follow Ready Nodes (`target: nodeport`).
    pub(crate) nodes: bool,
}

/// The kube-ovn `Subnet` kind: `kubeovn.io/v1`, cluster-scoped.
pub(crate) fn subnet_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubeovn.io", "v1", "Subnet"),
        "subnets",
    )
}

/// Starts the watchers `what` asks for, as tasks of `tasks`. Subnets are behind the
/// floor guard of `options` (see [`SubnetGuard`]).
pub(crate) fn spawn_reach(
    cluster: &ClusterName,
    client: &Client,
    desired: &Arc<Desired>,
    what: ReachWatch,
    options: &super::WatchOptions,
    status: &super::StatusCell,
    tasks: &mut JoinSet<()>,
) {
    if what.subnets {
        let api = Api::<DynamicObject>::all_with(client.clone(), &subnet_resource());
        let guard = SubnetGuard {
            cluster: cluster.clone(),
            desired: desired.clone(),
            api: api.clone(),
            floor: FloorGuard::new(options.withdraw_guard),
            confirm_after: options.confirm_after,
            status: status.clone(),
            held: Arc::default(),
        };
        tasks.spawn(watch_set(
            api,
            "Subnet",
            cluster.clone(),
            subnet_cidrs,
            move |sets, relisted| guard.offer(sets.into_iter().flatten().collect(), relisted),
        ));
    }
    if what.nodes {
        let api = Api::<Node>::all(client.clone());
        let (c, d) = (cluster.clone(), desired.clone());
        tasks.spawn(watch_set(
            api,
            "Node",
            c.clone(),
            ready_address,
            move |sets, _| {
                let nodes: Vec<(String, IpAddr)> = sets.into_iter().flatten().collect();
                let cause = Cause::Nodes {
                    cluster: c.clone(),
                    ready: nodes.len(),
                };
                d.apply(
                    &cause,
                    Input::Nodes {
                        cluster: c.clone(),
                        nodes,
                    },
                );
            },
        ));
    }
}

/// The floor guard for routability (the counterpart of `guard::RelistGuard` for
/// EndpointSlices): a Subnet relist, or one change withdrawing at least
/// `podgate_core::guard::MIN_BURST` endpoints, that would make more than `fraction` of the cluster's
/// registered endpoints unroutable is not applied; it is logged, and after
/// `confirm_after` a fresh list of the Subnets decides. A newer change replaces a held
/// one. A partial list from a struggling API server must not unregister a cluster.
/// `GuardedRelist::kind` of a held Subnet change.
const SUBNET: &str = "Subnet";

struct SubnetGuard {
    cluster: ClusterName,
    desired: Arc<Desired>,
    api: Api<DynamicObject>,
    floor: FloorGuard,
    confirm_after: std::time::Duration,
    /// Where a held withdrawal is shown (`guarded_relist` of the cluster).
    status: super::StatusCell,
    /// The confirmation waiting, if a withdrawal is held.
    held: Arc<parking_lot::Mutex<Option<tokio::task::AbortHandle>>>,
}

impl SubnetGuard {
    fn offer(&self, nets: Vec<IpNet>, relisted: bool) {
        if let Some(previous) = self.held.lock().take() {
            previous.abort();
        }
        let c = &self.cluster;
        let cause = Cause::Subnets {
            cluster: c.clone(),
            cidrs: nets.len(),
        };
        let mut held = None;
        let input = Input::Routable {
            cluster: c.clone(),
            routable: Some(nets),
        };
        self.desired.apply_if(&cause, input, |i, input| {
            let Input::Routable {
                routable: Some(nets),
                ..
            } = input
            else {
                return true;
            };
            let w = i.routable_withdrawal(c, nets);
            if let Verdict::Hold(w) = self.floor.routable(w, relisted) {
                held = Some(w);
                return false;
            }
            true
        });
        let Some(w) = held else {
            self.status.clear_guarded(SUBNET);
            return;
        };
        self.status.set_guarded(Some(super::GuardedRelist {
            kind: SUBNET,
            before: w.before,
            withdrawn: w.withdrawn,
            since_ms: crate::clock::now_ms(),
            confirm_after_ms: u64::try_from(self.confirm_after.as_millis()).unwrap_or(u64::MAX),
        }));
        tracing::warn!(cluster = %c, before = w.before, withdrawn = w.withdrawn, confirm_after = ?self.confirm_after, "Subnets would make too many endpoints unroutable at once; held until a fresh list confirms");
        let (cluster, desired, api) = (c.clone(), self.desired.clone(), self.api.clone());
        let status = self.status.clone();
        let confirm_after = self.confirm_after;
        let task = tokio::spawn(async move {
            tokio::time::sleep(confirm_after).await;
            let list = loop {
                match api.list(&kube::api::ListParams::default()).await {
                    Ok(list) => break list,
                    Err(e) => {
                        tracing::warn!(%cluster, error = %e, "cannot list Subnets to confirm a held withdrawal; retrying");
                        tokio::time::sleep(confirm_after.min(std::time::Duration::from_secs(5)))
                            .await;
                    }
                }
            };
            let nets: Vec<IpNet> = list.items.iter().flat_map(subnet_cidrs).collect();
            let cause = Cause::SubnetsConfirmed {
                cluster: cluster.clone(),
                cidrs: nets.len(),
            };
            let input = Input::Routable {
                cluster: cluster.clone(),
                routable: Some(nets),
            };
            let changes = desired
                .apply_if(&cause, input, |_, _| {
                    // Cleared in the same critical section as the change, as for slices.
                    status.clear_guarded(SUBNET);
                    true
                })
                .unwrap_or_default();
            tracing::warn!(%cluster, changed_upstreams = changes.upstreams.len(), "fresh Subnet list applied");
        });
        *self.held.lock() = Some(task.abort_handle());
    }
}

impl Drop for SubnetGuard {
    /// The watcher stopped (its controller is gone): so does a pending confirmation.
    fn drop(&mut self) {
        if let Some(held) = self.held.lock().take() {
            held.abort();
        }
    }
}

/// `spec.cidrBlock` of a Subnet: one CIDR, or two comma-separated for dual stack.
/// Unparsable parts are logged and left out (they widen nothing).
pub(crate) fn subnet_cidrs(subnet: &DynamicObject) -> Vec<IpNet> {
    let raw = subnet.data["spec"]["cidrBlock"].as_str().unwrap_or("");
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.parse::<IpNet>() {
            Ok(net) => Some(net),
            Err(e) => {
                tracing::warn!(subnet = %subnet.name_any(), cidr = s, error = %e, "unparsable Subnet cidrBlock ignored");
                None
            }
        })
        .collect()
}

/// The first `InternalIP` of a Node whose `Ready` condition is `True`.
pub(crate) fn ready_address(node: &Node) -> Vec<(String, IpAddr)> {
    let Some(status) = &node.status else {
        return Vec::new();
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return Vec::new();
    }
    status
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
        .map(|ip| vec![(node.name_any(), ip)])
        .unwrap_or_default()
}

/// Watches one kind, keeps `extract` of every object by name, and calls `publish` with
/// all values after each change (after a relist: once, with the whole new list, and
/// `true`).
async fn watch_set<K, V, X, P>(
    api: Api<K>,
    kind: &'static str,
    cluster: ClusterName,
    extract: X,
    publish: P,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    V: Clone + PartialEq + Send,
    X: Fn(&K) -> Vec<V> + Send,
    P: Fn(Vec<Vec<V>>, bool) + Send,
{
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut current: BTreeMap<String, Vec<V>> = BTreeMap::new();
    let mut relist: BTreeMap<String, Vec<V>> = BTreeMap::new();
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let relisted = matches!(event, Ok(watcher::Event::InitDone));
        let changed = match event {
            Ok(watcher::Event::Apply(obj)) => {
                let value = extract(&obj);
                current.insert(obj.name_any(), value.clone()) != Some(value)
            }
            Ok(watcher::Event::Delete(obj)) => current.remove(&obj.name_any()).is_some(),
            Ok(watcher::Event::Init) => {
                relist.clear();
                false
            }
            Ok(watcher::Event::InitApply(obj)) => {
                relist.insert(obj.name_any(), extract(&obj));
                false
            }
            Ok(watcher::Event::InitDone) => {
                let changed = !listed || current != relist;
                current = std::mem::take(&mut relist);
                listed = true;
                tracing::info!(%cluster, kind, objects = current.len(), "listed");
                changed
            }
            Err(e) => {
                tracing::warn!(%cluster, kind, error = %e, "watch failed; keeping last-known state");
                false
            }
        };
        if changed && listed {
            publish(current.values().cloned().collect(), relisted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str) -> DynamicObject {
        let mut obj = DynamicObject::new("ovn-default", &subnet_resource());
        obj.data = serde_json::json!({ "spec": { "cidrBlock": cidr } });
        obj
    }

    #[test]
    fn subnet_cidr_blocks_single_dual_stack_and_broken() {
        let nets = |c: &str| -> Vec<String> {
            subnet_cidrs(&subnet(c))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(nets("10.16.0.0/16"), ["10.16.0.0/16"]);
        assert_eq!(
            nets("10.16.0.0/16, fd00:10:16::/64"),
            ["10.16.0.0/16", "fd00:10:16::/64"]
        );
        assert_eq!(nets("10.16.0.0/16,bogus"), ["10.16.0.0/16"]);
        assert!(nets("").is_empty());
        assert!(subnet_cidrs(&DynamicObject::new("x", &subnet_resource())).is_empty());
    }

    fn node(ready: &str, addresses: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n1" },
            "status": {
                "conditions": [{ "type": "Ready", "status": ready }],
                "addresses": addresses.iter().map(|(t, a)| serde_json::json!({ "type": t, "address": a })).collect::<Vec<_>>()
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_ready_nodes_internal_ip_counts() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let addresses = [
            ("Hostname", "n1"),
            ("ExternalIP", "1.2.3.4"),
            ("InternalIP", "10.0.0.7"),
        ];
        assert_eq!(
            ready_address(&node("True", &addresses)),
            [("n1".to_owned(), ip)]
        );
        assert!(ready_address(&node("False", &addresses)).is_empty());
        assert!(ready_address(&node("Unknown", &addresses)).is_empty());
        assert!(ready_address(&node("True", &[("Hostname", "n1")])).is_empty());
        assert!(ready_address(&Node::default()).is_empty());
    }
}
