//! Active health checks in the built-in proxy, end to end: a cluster whose API server
//! is down keeps its last-known endpoints (stale), and when its pods then die the
//! proxy's checks (Service annotation `podgate.io/health-check`) take them out: no
//! request fails and none reaches them, while they stay registered.

use crate::failover_lab;

use failover_lab::{HOST, NS, PATIENCE, cluster, registered, shop};
use podgate::demo::{Lab, LabError, LabOptions};
use podgate_sim::objects::service;

const CHECK: &str = "GET / interval=200ms timeout=100ms healthy=1 unhealthy=2";

/// The endpoints the proxy marks unhealthy.
async fn unhealthy(lab: &Lab) -> Option<usize> {
    let view = lab
        .proxy_json(&format!("/v1/upstreams/{NS}/web/80"))
        .await
        .ok()?;
    Some(
        view["live"]
            .as_array()?
            .iter()
            .filter(|e| e["unhealthy"] == true)
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clusters_dead_pods_are_taken_out_by_health_checks() -> Result<(), LabError> {
    let options = LabOptions {
        hold_down: std::time::Duration::ZERO,
        ..LabOptions::default()
    };
    let (lab, _idc, mut tke) = shop(options, 60, 2, 2).await?;
    for name in ["idc", "tke"] {
        let annotated = service(NS, "web")
            .port("http", 80)
            .annotate("podgate.io/health-check", CHECK)
            .build();
        lab.apply(name, &annotated)?;
    }
    lab.eventually("the proxy holds the check", PATIENCE, || async {
        let state = lab.proxy_state().await.ok()?;
        state["upstreams"]
            .as_array()?
            .iter()
            .any(|u| u["health_check"]["interval_ms"] == 200)
            .then_some(())
    })
    .await?;
    assert_eq!(unhealthy(&lab).await, Some(0), "live pods pass");

    lab.sim("tke").stop().await;
    lab.eventually("tke is stale", PATIENCE, || async {
        (cluster(&lab, "tke").await?["state"] == "stale").then_some(())
    })
    .await?;
    tke.clear(); // the pods die; nobody can tell the API server
    lab.eventually("the dead pods fail their checks", PATIENCE, || async {
        (unhealthy(&lab).await? == 2).then_some(())
    })
    .await?;
    let split = lab.split(HOST, 300).await?;
    assert_eq!(
        (split.failed, split.cluster("tke")),
        (0, 0),
        "after the threshold: {split:?}"
    );
    assert!(split.cluster("idc") == 300, "{split:?}");
    assert_eq!(
        registered(&lab, "tke").await,
        Some(2),
        "stale: still registered"
    );
    let metrics = failover_lab::metrics(&lab).await?;
    assert!(
        !metrics.is_empty(),
        "the controller's metrics are readable too"
    );
    Ok(())
}
