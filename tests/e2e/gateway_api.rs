//! End to end, with live traffic through the proxy: an HTTPRoute in the simulated
//! API server (which serves the Gateway API v1.6.1 CRDs in tke and not in idc) is
//! served by the proxy — a header match to the canary, the rest split by weight — and
//! a cluster without the CRDs says so and stays synced.

use std::time::Duration;

use podgate::demo::pods;
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_sim::objects::service;
use serde_json::{Value, json};

const NS: &str = "shop";
const HOST: &str = "gw.example.com";
const WAIT: Duration = Duration::from_secs(20);

/// The CRDs, as a cluster admin installs them.
pub(crate) fn crds() -> String {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/podgate-sim/tests/fixtures/gateway-api"
    );
    [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "referencegrants",
    ]
    .iter()
    .map(|k| std::fs::read_to_string(format!("{dir}/{k}.yaml")).expect("CRD fixture"))
    .collect::<Vec<_>>()
    .join("\n---\n")
}

fn options() -> LabOptions {
    LabOptions {
        configure: Some(Configure::new(|_, sims| {
            sims[1].register_crds(&crds()).expect("the CRDs register");
        })),
        ..LabOptions::default()
    }
}

pub(crate) fn gateway_objects(host: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "podgate"},
               "spec": {"controllerName": "podgate.io/gateway-controller"}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"namespace": NS, "name": "edge"},
               "spec": {"gatewayClassName": "podgate",
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": NS, "name": "web"},
        "spec": {"parentRefs": [{"name": "edge"}], "hostnames": [host],
                 "rules": [
                   {"matches": [{"headers": [{"name": "x-canary", "value": "true"}]}],
                    "backendRefs": [{"name": "canary", "port": 80}]},
                   {"backendRefs": [{"name": "stable", "port": 80, "weight": 3},
                                    {"name": "canary", "port": 80, "weight": 1}]},
                 ]}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_route_is_served_and_a_cluster_without_the_crds_says_so() {
    let lab = Lab::start(options()).await.unwrap();
    let port = pods::free_port().await.unwrap();
    let stable = pods::start_many("tke", "stable", 230, 1, 2, port)
        .await
        .unwrap();
    let canary = pods::start_many("tke", "canary", 230, 11, 1, port)
        .await
        .unwrap();
    let sim = lab.sim("tke");
    sim.apply_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .unwrap();
    for (name, pods) in [("stable", &stable), ("canary", &canary)] {
        lab.apply("tke", &service(NS, name).port("http", 80).build())
            .unwrap();
        lab.apply(
            "tke",
            &pods::slice_of(NS, &format!("{name}-1"), name, pods, &[]),
        )
        .unwrap();
    }
    for obj in gateway_objects(HOST) {
        sim.apply_json(obj).unwrap();
    }

    lab.eventually("the canary by header", WAIT, || async {
        let url = format!("http://{}/any", lab.proxy.http_addr);
        let body = reqwest::Client::new()
            .get(url)
            .header("host", HOST)
            .header("x-canary", "true")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.contains("canary").then_some(())
    })
    .await
    .unwrap();
    // Without the header: 3:1 between stable and canary (wide bounds, 400 requests).
    let split = lab.split(HOST, 400).await.unwrap();
    assert_eq!(split.failed, 0, "{split:?}");
    let canary_hits: usize = split
        .by_pod
        .iter()
        .filter(|(pod, _)| pod.contains("canary"))
        .map(|(_, n)| *n)
        .sum();
    assert!(
        (50..150).contains(&canary_hits),
        "canary {canary_hits} of 400: {split:?}"
    );

    let clusters = lab.admin_json("/v1/clusters").await.unwrap();
    let state = |name: &str| {
        clusters
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .map(|c| (c["state"].clone(), c["gateway_api"].clone()))
    };
    assert_eq!(
        state("idc"),
        Some((json!("synced"), json!("absent"))),
        "{clusters}"
    );
    assert_eq!(
        state("tke"),
        Some((json!("synced"), json!("watched"))),
        "{clusters}"
    );
}
