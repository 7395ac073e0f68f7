//! Writes `status.loadBalancer.ingress` of podgate's Ingresses with the configured
//! publish addresses. Only Ingresses of podgate's class, and only when the status
//! differs (so the MODIFIED event our patch causes does not patch again).

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::model::ClusterName;
use crate::sync::Desired;

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

/// Returns the hook the Ingress watcher calls after each Ingress reached the Index.
pub(crate) fn writer(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    addresses: Vec<String>,
) -> Box<dyn Fn(&Ingress) + Send + Sync> {
    let want = entries(&addresses);
    Box::new(move |ing: &Ingress| {
        if addresses.is_empty() {
            return;
        }
        let (ns, name) = (ing.namespace().unwrap_or_default(), ing.name_any());
        if !desired.read(|i| i.serves(&cluster, &ns, &name)) {
            return;
        }
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default();
        if current == want {
            return;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": want } } });
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let params = PatchParams::default();
            if let Err(e) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(%cluster, ingress = %format!("{ns}/{name}"), error = %e, "could not write Ingress status");
            }
        });
    })
}
