//! `podgate demo`: the whole product on one machine, narrated. Two simulated clusters,
//! simulated pods on 127.1.x.y, the built-in proxy and a controller, then a short
//! scenario: split by cluster weight, re-weight, scale out, drain, fail over, and an API
//! server going away. Afterwards it keeps serving until Ctrl-C (unless `--once`).

mod lab;
pub mod pods;

use std::net::SocketAddr;
use std::time::Duration;

pub use lab::{CLUSTERS, Lab, LabError, LabOptions, Split};

use crate::objects::{default_class, ingress, ingress_class, service, slice};
use pods::Pod;

const HOST: &str = "shop.example.com";
const NS: &str = "shop";

/// The app's EndpointSlice in one cluster, from its pods; `draining` pods are
/// terminating.
fn endpoints(
    cluster: &str,
    pods: &[Pod],
    draining: &[&str],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", port);
    for p in pods {
        s = if draining.contains(&p.name.as_str()) {
            s.terminating(&p.ip())
        } else {
            s.ready(&p.ip())
        };
        s = s.at(&format!("{cluster}-zone-a"), &format!("{cluster}-node-1"));
    }
    s.build()
}

fn say(text: &str) {
    println!("\n== {text}");
}

fn show(split: &Split) {
    let parts: Vec<String> = split
        .by_pod
        .iter()
        .map(|(p, n)| format!("{p}: {n}"))
        .collect();
    println!("   {}  (failed: {})", parts.join(", "), split.failed);
}

/// The demo's moving parts.
struct Demo {
    lab: Lab,
    port: u16,
    idc: Vec<Pod>,
    tke: Vec<Pod>,
}

/// Runs the demo. `listen` is where the proxy serves plain HTTP.
pub async fn run(listen: SocketAddr, once: bool) -> Result<(), LabError> {
    let lab = Lab::start(LabOptions {
        listen,
        ..LabOptions::default()
    })
    .await?;
    let port = pods::free_port().await?;
    let idc = pods::start_many("idc", "web", 1, 1, 2, port).await?;
    let tke = pods::start_many("tke", "web", 2, 1, 2, port).await?;
    let mut demo = Demo {
        lab,
        port,
        idc,
        tke,
    };
    demo.setup().await?;
    demo.weights().await?;
    demo.scale_out().await?;
    demo.drain().await?;
    demo.failover().await?;
    demo.stale().await?;
    if !once {
        say("Still serving. Try:");
        println!(
            "   curl -H 'Host: {HOST}' http://{}/",
            demo.lab.proxy.http_addr
        );
        println!("   curl http://{}/v1/state", demo.lab.controller.admin_addr);
        println!("   Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    Ok(())
}

impl Demo {
    async fn setup(&self) -> Result<(), LabError> {
        let lab = &self.lab;
        say("Two clusters, one app: shop/web runs 2 pods in idc and 2 in tke");
        for (cluster, pods) in [("idc", &self.idc), ("tke", &self.tke)] {
            let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
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
            lab.apply(cluster, &endpoints(cluster, pods, &[]))?;
        }
        lab.eventually(
            "all four pods registered",
            Duration::from_secs(20),
            || async {
                let s = lab.split(HOST, 40).await.ok()?;
                (s.by_pod.len() == 4).then_some(())
            },
        )
        .await?;
        println!(
            "   proxy:      http://{}  (Host: {HOST})",
            lab.proxy.http_addr
        );
        println!(
            "   admin view: http://{}/v1/state",
            lab.controller.admin_addr
        );
        say("Cluster weights idc=100, tke=100: traffic splits evenly, straight to pod IPs");
        show(&lab.split(HOST, 200).await?);
        Ok(())
    }

    async fn weights(&self) -> Result<(), LabError> {
        let lab = &self.lab;
        say("Annotate the Service podgate.io/cluster-weights=idc=80,tke=20");
        let weighted = service(NS, "web")
            .port("http", 80)
            .annotate("podgate.io/cluster-weights", "idc=80,tke=20");
        lab.apply("idc", &weighted.build())?;
        lab.eventually("80/20 split", Duration::from_secs(10), || async {
            let s = lab.split(HOST, 100).await.ok()?;
            (s.cluster("idc") >= 65).then_some(())
        })
        .await?;
        show(&lab.split(HOST, 200).await?);
        Ok(())
    }

    async fn scale_out(&mut self) -> Result<(), LabError> {
        say("Scale out in tke: a third pod is registered as soon as it is ready");
        self.tke
            .extend(pods::start_many("tke", "web", 2, 3, 1, self.port).await?);
        let lab = &self.lab;
        lab.apply("tke", &endpoints("tke", &self.tke, &[]))?;
        lab.eventually("web-3 serving", Duration::from_secs(10), || async {
            let s = lab.split(HOST, 100).await.ok()?;
            s.by_pod.contains_key("tke/web-3").then_some(())
        })
        .await?;
        show(&lab.split(HOST, 200).await?);
        Ok(())
    }

    async fn drain(&self) -> Result<(), LabError> {
        let lab = &self.lab;
        say("idc/web-1 is terminating: it drains (no new requests) while it finishes");
        lab.apply("idc", &endpoints("idc", &self.idc, &["web-1"]))?;
        lab.eventually("idc/web-1 drained", Duration::from_secs(10), || async {
            let s = lab.split(HOST, 50).await.ok()?;
            (!s.by_pod.contains_key("idc/web-1")).then_some(())
        })
        .await?;
        show(&lab.split(HOST, 200).await?);
        Ok(())
    }

    async fn failover(&mut self) -> Result<(), LabError> {
        say("idc scales to zero: tke takes all traffic, no request fails");
        let lab = &self.lab;
        lab.apply("idc", &endpoints("idc", &[], &[]))?;
        lab.eventually("failover to tke", Duration::from_secs(10), || async {
            let s = lab.split(HOST, 50).await.ok()?;
            (s.cluster("idc") == 0 && s.failed == 0).then_some(())
        })
        .await?;
        self.idc.clear();
        show(&self.lab.split(HOST, 200).await?);
        Ok(())
    }

    async fn stale(&self) -> Result<(), LabError> {
        let lab = &self.lab;
        say("idc's API server goes away: idc is stale, nothing is withdrawn, tke keeps serving");
        lab.sim("idc").stop().await;
        lab.eventually("idc stale", Duration::from_secs(30), || async {
            let state = lab.admin_state().await.ok()?;
            let idc = state["clusters"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "idc")?
                .clone();
            (idc["state"] == "stale").then_some(())
        })
        .await?;
        show(&lab.split(HOST, 100).await?);
        let state = lab.admin_state().await?;
        for c in state["clusters"].as_array().into_iter().flatten() {
            println!("   cluster {}: {}", c["name"], c["state"]);
        }
        Ok(())
    }
}
