//! Shared set-up for the failover and stale-cluster end-to-end tests: one app
//! (`shop/web`) in both clusters of a `Lab`, live traffic through the built-in proxy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabError, LabOptions};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use serde_json::Value;

pub(crate) const HOST: &str = "shop.example.com";
pub(crate) const NS: &str = "shop";
/// Generous: two cores are shared by several builds and test runs.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The app's EndpointSlice in `cluster`, every pod ready.
pub(crate) fn endpoints(cluster: &str, pods: &[Pod]) -> EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", port);
    for p in pods {
        s = s.ready(&p.ip());
    }
    s.build()
}

/// A lab serving `shop/web` with `idc` pods in idc and `tke` pods in tke, every pod
/// registered. Pods live on 127.1.{subnet}.x; `subnet` keeps parallel tests apart.
pub(crate) async fn shop(
    options: LabOptions,
    subnet: u8,
    idc: u8,
    tke: u8,
) -> Result<(Lab, Vec<Pod>, Vec<Pod>), LabError> {
    let lab = Lab::start(options).await?;
    let port = pods::free_port().await?;
    let idc_pods = pods::start_many("idc", "web", subnet, 1, idc, port).await?;
    let tke_pods = pods::start_many("tke", "web", subnet, 101, tke, port).await?;
    for (cluster, pods) in [("idc", &idc_pods), ("tke", &tke_pods)] {
        let namespace =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        lab.sim(cluster).apply_json(namespace)?;
        lab.apply(
            cluster,
            &default_class(ingress_class("podgate", &lab.config.controller_name)),
        )?;
        lab.apply(cluster, &service(NS, "web").port("http", 80).build())?;
        lab.apply(
            cluster,
            &ingress(NS, "web")
                .route(HOST, "Prefix", "/", "web", 80)
                .build(),
        )?;
        lab.apply(cluster, &endpoints(cluster, pods))?;
    }
    let total = usize::from(idc) + usize::from(tke);
    lab.eventually("every pod registered", PATIENCE, || async {
        let s = lab.split(HOST, 20 * total).await.ok()?;
        (s.by_pod.len() == total).then_some(())
    })
    .await?;
    Ok((lab, idc_pods, tke_pods))
}

/// The admin view's entry for one cluster.
pub(crate) async fn cluster(lab: &Lab, name: &str) -> Option<Value> {
    let state = lab.admin_state().await.ok()?;
    state["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

/// Endpoints of `cluster` in the desired `shop/web:80` upstream.
pub(crate) async fn registered(lab: &Lab, cluster: &str) -> Option<usize> {
    let state = lab.admin_state().await.ok()?;
    let up = state["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["key"]["service"] == "web")?
        .clone();
    Some(
        up["endpoints"]
            .as_array()?
            .iter()
            .filter(|e| e["cluster"] == cluster)
            .count(),
    )
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The controller's `/metrics` text.
pub(crate) async fn metrics(lab: &Lab) -> Result<String, LabError> {
    lab.controller_metrics().await
}

/// Pushes to the LB recorded in the audit ring since `since_ms`.
pub(crate) fn pushes_since(lab: &Lab, since_ms: u64) -> usize {
    lab.controller
        .admin
        .audit
        .entries()
        .iter()
        .filter(|e| e.at_ms >= since_ms)
        .count()
}
