//! End to end, with live traffic through the proxy: `target: nodeport`. tke's pod IPs
//! are live servers too, but the LB must reach tke only through its Ready nodes at the
//! Service's nodePort (simulated "nodes" are servers on 127.1.43.x at that port).

use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_core::index::EndpointTarget;
use podgate_sim::Gvr;
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use serde_json::{Value, json};

const HOST: &str = "shop.example.com";
const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(20);

fn node(name: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": {
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "addresses": [
                { "type": "Hostname", "address": name },
                { "type": "InternalIP", "address": ip }
            ]
        }
    })
}

/// Sets up shop/web in both clusters (tke's Service is of type NodePort) and returns
/// the nodePort the API server allocated in tke.
fn setup(lab: &Lab, idc: &[Pod], tke: &[Pod]) -> u16 {
    let mut node_port = 0;
    for (cluster, pods) in [("idc", idc), ("tke", tke)] {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        lab.sim(cluster).apply_json(namespace).unwrap();
        lab.apply(
            cluster,
            &default_class(ingress_class("podgate", &lab.config.controller_name)),
        )
        .unwrap();
        let mut svc = service(NS, "web").port("http", 80).build();
        if cluster == "tke" {
            svc.spec.as_mut().unwrap().type_ = Some("NodePort".to_owned());
        }
        let stored = lab.sim(cluster).apply(&svc).unwrap();
        if cluster == "tke" {
            node_port = stored["spec"]["ports"][0]["nodePort"]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .expect("the API server allocates a nodePort");
        }
        lab.apply(
            cluster,
            &ingress(NS, "web")
                .route(HOST, "Prefix", "/", "web", 80)
                .build(),
        )
        .unwrap();
        let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", pods[0].addr.port());
        for p in pods {
            s = s.ready(&p.ip());
        }
        lab.apply(cluster, &s.build()).unwrap();
    }
    node_port
}

async fn serving(lab: &Lab, n: usize) -> Option<Vec<String>> {
    let split = lab.split(HOST, n).await.ok()?;
    (split.failed == 0).then(|| split.by_pod.keys().cloned().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeport_target_registers_ready_nodes_at_the_node_port() {
    let lab = Lab::start(LabOptions {
        configure: Some(Configure::new(|config, _| {
            config.clusters[1].target = EndpointTarget::NodePort;
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let idc = pods::start_many("idc", "web", 41, 1, 1, port)
        .await
        .unwrap();
    let tke = pods::start_many("tke", "web", 42, 1, 2, port)
        .await
        .unwrap();
    let nodes = ["127.1.43.1", "127.1.43.2", "127.1.43.3"];
    let tke_sim = lab.sim("tke");
    tke_sim.apply_json(node("node-1", nodes[0], true)).unwrap();
    tke_sim.apply_json(node("node-2", nodes[1], true)).unwrap();
    tke_sim.apply_json(node("node-3", nodes[2], false)).unwrap();
    let node_port = setup(&lab, &idc, &tke);
    // The "nodes": servers at node:nodePort, answering as tke.
    let mut node_servers = Vec::new();
    for (i, ip) in nodes.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        node_servers.push(
            Pod::start("tke", &name, ip.parse().unwrap(), node_port)
                .await
                .unwrap(),
        );
    }

    let want = ["idc/web-1", "tke/node-1", "tke/node-2"];
    lab.eventually("tke served through its Ready nodes", WAIT, || async {
        (serving(&lab, 60).await? == want).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(serving(&lab, 100).await.unwrap(), want);
    assert_eq!(
        tke[0].hits() + tke[1].hits(),
        0,
        "tke pod IPs are never used"
    );
    assert_eq!(node_servers[2].hits(), 0, "node-3 is not Ready");

    // The admin view shows node:nodePort with the node name and cluster.
    let state = lab.admin_state().await.unwrap();
    let endpoints: Vec<(String, String, u64)> = state["upstreams"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cluster"] == "tke")
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_owned(),
                e["node"].as_str().unwrap_or("").to_owned(),
                e["port"].as_u64().unwrap(),
            )
        })
        .collect();
    let np = u64::from(node_port);
    assert_eq!(
        endpoints,
        [
            ("127.1.43.1".to_owned(), "node-1".to_owned(), np),
            ("127.1.43.2".to_owned(), "node-2".to_owned(), np),
        ]
    );

    // node-2 leaves the cluster: only node-1 is left for tke.
    tke_sim
        .delete(&Gvr::new("", "v1", "nodes"), None, "node-2")
        .unwrap();
    lab.eventually("node-2 withdrawn", WAIT, || async {
        (serving(&lab, 40).await? == ["idc/web-1", "tke/node-1"]).then_some(())
    })
    .await
    .unwrap();

    // tke scales to zero: its nodes would forward into nothing, so its share moves away.
    lab.apply(
        "tke",
        &slice(NS, "web-tke", "web").port("http", port).build(),
    )
    .unwrap();
    lab.eventually("tke share gone with its pods", WAIT, || async {
        (serving(&lab, 40).await? == ["idc/web-1"]).then_some(())
    })
    .await
    .unwrap();
}
