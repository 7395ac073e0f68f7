//! Writes `status.loadBalancer.ingress` of podgate's Ingresses with the configured
//! publish addresses: only Ingresses of podgate's class, and only when the status
//! differs (so the MODIFIED event our patch causes does not patch again).
//!
//! A reconciler, not a reaction to one event: whether an Ingress is podgate's can change
//! because its IngressClass arrived later on another watch, so the watcher records each
//! Ingress's current status and this task compares all of them with the Index.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::hub::Desired;
use podgate_core::model::ClusterName;

/// How often statuses are compared with the Index.
const INTERVAL: Duration = Duration::from_millis(500);

/// `(namespace, name)` → the status the cluster last showed us.
pub(crate) type Seen = Arc<Mutex<HashMap<(String, String), Vec<IngressLoadBalancerIngress>>>>;

/// The `loadBalancer.ingress` entries for the publish addresses: IPs as `ip`, names as
/// `hostname`.
fn entries(addresses: &[String]) -> Vec<IngressLoadBalancerIngress> {
    addresses
        .iter()
        .map(|a| match a.parse::<IpAddr>() {
            Ok(_) => IngressLoadBalancerIngress {
                ip: Some(a.clone()),
                ..Default::default()
            },
            Err(_) => IngressLoadBalancerIngress {
                hostname: Some(a.clone()),
                ..Default::default()
            },
        })
        .collect()
}

/// The hook the Ingress watcher calls for every Ingress it sees.
pub(crate) fn recorder(seen: Seen) -> Box<dyn Fn(&Ingress) + Send + Sync> {
    Box::new(move |ing: &Ingress| {
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default();
        seen.lock().insert(
            (ing.namespace().unwrap_or_default(), ing.name_any()),
            current,
        );
    })
}

/// Patches the status of every served Ingress whose status differs, until dropped.
pub(crate) async fn run(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    seen: Seen,
    addresses: Vec<String>,
) {
    if addresses.is_empty() {
        return;
    }
    let want = entries(&addresses);
    loop {
        tokio::time::sleep(INTERVAL).await;
        let stale: Vec<(String, String)> = {
            let seen = seen.lock();
            desired.read(|index| {
                seen.iter()
                    .filter(|((ns, name), current)| {
                        **current != want && index.serves(&cluster, ns, name)
                    })
                    .map(|(key, _)| key.clone())
                    .collect()
            })
        };
        for (ns, name) in stale {
            let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
            let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": want } } });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // Assume it took; the watch will report the truth.
                Ok(_) => drop(seen.lock().insert((ns, name), want.clone())),
                Err(kube::Error::Api(e)) if e.code == 404 => drop(seen.lock().remove(&(ns, name))),
                Err(e) => {
                    tracing::warn!(%cluster, ingress = %format!("{ns}/{name}"), error = %e, "could not write Ingress status");
                }
            }
        }
    }
}
