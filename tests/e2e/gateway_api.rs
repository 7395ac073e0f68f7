//! End to end, with live traffic through the proxy: an HTTPRoute in the simulated
//! API server (which serves the Gateway API v1.6.1 CRDs in tke and not in idc) is
//! served by the proxy — a header match to the canary, the rest split by weight — and
//! a cluster without the CRDs says so and stays synced.

use std::time::Duration;

use podgate::demo::pods;
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_sim::Gvr;
use podgate_sim::objects::service;
use serde_json::{Value, json};

const NS: &str = "shop";
const HOST: &str = "gw.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn options() -> LabOptions {
    LabOptions {
        configure: Some(Configure::new(|_, sims| {
            sims[1]
                .register_crds(podgate_sim::GATEWAY_API_CRDS)
                .expect("the CRDs register");
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
    // The class last: the route already shows another controller's parent, which
    // podgate's status write must keep.
    let mut objects = gateway_objects(HOST);
    let class = objects.remove(0);
    for obj in objects {
        sim.apply_json(obj).unwrap();
    }
    foreign_parent(sim).await;
    sim.apply_json(class).unwrap();

    served_by_header_and_weight(&lab).await;
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

    statuses_as_users_read_them(&lab).await;

    // The "why" of a URL names the rules, what else they need, and the split.
    let why = lab
        .admin_json(&format!("/v1/explain?url=http://{HOST}/any"))
        .await
        .unwrap();
    assert_eq!(why["via"], "Gateway API rule", "{why}");
    let rules = why["gateway_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{why}");
    assert_eq!(rules[0]["needs"], json!(["header x-canary: true"]), "{why}");
    assert_eq!(rules[1]["source"], "HTTPRoute shop/web rule 1", "{why}");
    assert_eq!(
        why["upstream"]["service"], "stable",
        "the heavier share: {why}"
    );
    let weights: Vec<u64> = why["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [3, 1], "{why}");
    // The apps list shows the route's upstreams with the rules that reach them.
    let apps = lab.admin_json(&format!("/v1/apps?q={HOST}")).await.unwrap();
    let canary_app = apps["apps"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["service"] == "canary"))
        .unwrap_or_else(|| panic!("{apps}"));
    let shown: Vec<String> = canary_app["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["host"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        shown.contains(&format!(
            "{HOST} /* [x-canary: true] (HTTPRoute shop/web rule 0)"
        )),
        "{shown:?}"
    );

    // A route naming a Service that does not exist: its status says so, and so does a
    // Warning Event on the route.
    let mut broken = gateway_objects("broken.example.com").remove(2);
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["rules"][1]["backendRefs"][0]["name"] = json!("gone");
    sim.apply_json(broken).unwrap();
    let events = Gvr::new("events.k8s.io", "v1", "events");
    let event = lab
        .eventually("a Warning Event on the broken route", WAIT, || async {
            sim.list(&events, Some(NS)).into_iter().find(|e| {
                e["regarding"]["kind"] == "HTTPRoute"
                    && e["regarding"]["name"] == "broken"
                    && e["reason"] == "BackendNotFound"
            })
        })
        .await
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["regarding"]["apiVersion"],
        "gateway.networking.k8s.io/v1"
    );
    assert!(
        event["note"].as_str().unwrap().contains("shop/gone"),
        "{event}"
    );
}

/// Another controller's entry in the route's `status.parents`.
async fn foreign_parent(sim: &podgate_sim::SimCluster) {
    let client = sim.client().unwrap();
    let api: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
        client,
        NS,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        ),
    );
    let patch = json!({"status": {"parents": [{
        "parentRef": {"name": "theirs"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1}],
    }]}});
    api.patch_status(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("status patch");
}

/// The canary by its header, the rest 3:1 by weight.
async fn served_by_header_and_weight(lab: &Lab) {
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
}

/// Status of the class, the Gateway and the route, another controller's parent kept.
async fn statuses_as_users_read_them(lab: &Lab) {
    let sim = lab.sim("tke");
    let gvr = |plural: &str| Gvr::new("gateway.networking.k8s.io", "v1", plural);
    let condition = |obj: &Value, kind: &str| {
        obj["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .map(|c| (c["status"].clone(), c["reason"].clone()))
    };
    let route_status = lab
        .eventually("the route's status", WAIT, || async {
            let route = sim.get(&gvr("httproutes"), Some(NS), "web")?;
            let parents = route["status"]["parents"].as_array()?.clone();
            (parents.len() == 2).then_some(parents)
        })
        .await
        .unwrap();
    assert_eq!(
        route_status[0]["controllerName"], "example.com/other",
        "kept in place"
    );
    let ours = &route_status[1];
    assert_eq!(ours["controllerName"], "podgate.io/gateway-controller");
    assert_eq!(ours["parentRef"]["name"], "edge");
    assert_eq!(
        condition(ours, "Accepted"),
        Some((json!("True"), json!("Accepted")))
    );
    assert_eq!(
        condition(ours, "ResolvedRefs"),
        Some((json!("True"), json!("ResolvedRefs")))
    );
    let gw = sim.get(&gvr("gateways"), Some(NS), "edge").unwrap();
    assert_eq!(
        condition(&gw["status"], "Programmed"),
        Some((json!("True"), json!("Programmed"))),
        "{gw}"
    );
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1, "{gw}");
    let class = sim.get(&gvr("gatewayclasses"), None, "podgate").unwrap();
    assert_eq!(
        condition(&class["status"], "Accepted"),
        Some((json!("True"), json!("Accepted")))
    );
}
