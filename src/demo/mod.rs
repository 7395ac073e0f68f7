//! `podgate demo`: the whole product on one machine, narrated. Two simulated clusters,
//! simulated pods on 127.1.x.y, the built-in proxy and a controller; a short scenario
//! (split by cluster weight, re-weight, scale out behind the readiness gate, drain, fail
//! over, an API server going away), then the app keeps scaling up and down every few seconds until Ctrl-C so the
//! user can watch pods register and drain.

pub mod kubelet;
mod lab;
pub mod pods;

use std::net::SocketAddr;
use std::time::Duration;

pub use lab::{CLUSTERS, Configure, ConfigureFn, Lab, LabError, LabOptions, Split};

use podgate_sim::objects::{service, slice};
use pods::Pod;

/// The app's host: a reserved `.test` name that never resolves anywhere.
pub const DEFAULT_HOST: &str = "demo.podgate.test";
const NS: &str = "shop";

/// Where the demo listens and which host the app answers.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub proxy_admin: SocketAddr,
    pub controller_admin: SocketAddr,
    pub host: String,
    /// Exit after the scenario instead of scaling the app until Ctrl-C.
    pub once: bool,
    /// No pauses between steps (tests); otherwise each step waits for a reader.
    pub fast: bool,
}

/// The app's EndpointSlice in one cluster: every pod ready except those `starting`
/// (not ready yet) and `draining` (terminating).
fn endpoints(
    cluster: &str,
    pods: &[Pod],
    starting: &[&str],
    draining: &[&str],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", port);
    for p in pods {
        let name = p.name.as_str();
        s = if draining.contains(&name) {
            s.terminating(&p.ip())
        } else if starting.contains(&name) {
            s.not_ready(&p.ip())
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
    let sent = split.by_pod.values().sum::<usize>() + split.failed;
    println!(
        "   of {sent} requests: {}  (failed: {})",
        parts.join(", "),
        split.failed
    );
}

/// The demo's moving parts.
struct Demo {
    lab: Lab,
    /// How long a step stays on screen before the next one.
    pace: Duration,
    /// The admin token (the web UI's login) and the file holding it.
    token: String,
    token_file: std::path::PathBuf,
    host: String,
    port: u16,
    idc: Vec<Pod>,
    tke: Vec<Pod>,
    /// Pods behind the readiness gate, with the kubelet test double that readies them.
    gated: Vec<Pod>,
    kubelet: Option<kubelet::Kubelet>,
    /// The Gateway API step's canary pod.
    canary: Option<Pod>,
}

/// Runs the demo.
pub async fn run(options: DemoOptions) -> Result<(), LabError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let dir = podgate_sim::scratch_dir()?;
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, &token)?;
    let admin_token = token_file.clone();
    // The weights ConfigMap lives in tke, which stays up while idc's API server goes
    // away: `podgate weights` and `podgate migrate` work all through the demo.
    let configure = Configure::new(move |config, sims| {
        config.admin.token_file = Some(admin_token.clone());
        config.weights.cluster = Some("tke".to_owned());
        // Both clusters serve the Gateway API, as clusters with its CRDs installed do.
        for sim in sims {
            if let Err(e) = sim.register_crds(podgate_sim::GATEWAY_API_CRDS) {
                tracing::warn!(error = %e, "the Gateway API CRDs did not register");
            }
        }
    });
    let lab_options = LabOptions {
        listen: options.listen,
        proxy_admin: options.proxy_admin,
        controller_admin: options.controller_admin,
        configure: Some(configure),
        ..LabOptions::default()
    };
    let lab = Lab::start(lab_options).await?;
    let port = pods::free_port().await?;
    let idc = pods::start_many("idc", "web", 1, 1, 2, port).await?;
    let tke = pods::start_many("tke", "web", 2, 1, 2, port).await?;
    let mut demo = Demo {
        lab,
        pace: if options.fast {
            Duration::ZERO
        } else {
            Duration::from_millis(1500)
        },
        token,
        token_file,
        host: options.host,
        port,
        idc,
        tke,
        gated: Vec::new(),
        kubelet: None,
        canary: None,
    };
    demo.setup().await?;
    demo.gateway_api().await?;
    demo.weights().await?;
    demo.scale_out().await?;
    demo.migrate().await?;
    demo.drain().await?;
    demo.failover().await?;
    demo.stale().await?;
    if !options.once {
        demo.keep_scaling().await?;
    }
    drop(dir);
    Ok(())
}

impl Demo {
    /// Lets a person read the step (nothing with `--fast`).
    async fn pause(&self) {
        tokio::time::sleep(self.pace).await;
    }

    async fn setup(&self) -> Result<(), LabError> {
        let (lab, host) = (&self.lab, self.host.as_str());
        say("Two clusters, one app: shop/web runs 2 pods in idc and 2 in tke");
        lab.deploy(NS, host, &[("idc", &self.idc), ("tke", &self.tke)])?;
        lab.eventually(
            "all four pods registered",
            Duration::from_secs(20),
            || async {
                let s = lab.split(host, 40).await.ok()?;
                (s.by_pod.len() == 4).then_some(())
            },
        )
        .await?;
        let admin = lab.controller.admin_addr;
        println!(
            "   web UI:      http://{admin}/   (watch the steps live; log in to move traffic)"
        );
        println!(
            "   admin token: {}   (in {})",
            self.token,
            self.token_file.display()
        );
        println!(
            "   try:         curl -H 'Host: {host}' http://{}/",
            lab.proxy.http_addr
        );
        println!("   CLI:         podgate status --controller http://{admin}");
        println!(
            "                podgate weights set idc=20 tke=80 --controller http://{admin} --token-file {}",
            self.token_file.display()
        );
        println!(
            "   LB contract: http://{} (the proxy's admin API, bearer token)",
            lab.proxy.admin_addr
        );
        self.pause().await;
        say("Cluster weights idc=100, tke=100: traffic splits evenly, straight to pod IPs");
        show(&lab.split(host, 200).await?);
        self.pause().await;
        Ok(())
    }

    /// One HTTPRoute, written the same in both clusters (namespace sameness): a
    /// header sends the canary (a pod in tke) its requests, the rest go to shop/web
    /// in both clusters.
    async fn gateway_api(&mut self) -> Result<(), LabError> {
        let lab = &self.lab;
        let host = format!(
            "api.{}",
            self.host.split_once('.').map_or("example.com", |(_, d)| d)
        );
        say(&format!(
            "Gateway API: an HTTPRoute for {host}; `x-canary: true` goes to the canary pod in tke, the rest to shop/web in both clusters"
        ));
        let canary = Pod::start("tke", "canary-1", [127, 1, 3, 1].into(), self.port).await?;
        lab.apply(
            "tke",
            &podgate_sim::objects::service(NS, "canary")
                .port("http", 80)
                .build(),
        )?;
        lab.apply(
            "tke",
            &pods::slice_of(NS, "canary-1", "canary", std::slice::from_ref(&canary), &[]),
        )?;
        for cluster in ["idc", "tke"] {
            for obj in gateway_objects(&host) {
                lab.sim(cluster).apply_json(obj)?;
            }
        }
        let url = format!("http://{}/", lab.proxy.http_addr);
        let client = reqwest::Client::new();
        let answer = lab
            .eventually("the canary by header", Duration::from_secs(20), || async {
                let body = client
                    .get(&url)
                    .header(http::header::HOST, &host)
                    .header("x-canary", "true")
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                body.contains("canary").then_some(body)
            })
            .await?;
        println!("   with x-canary: true → {}", answer.trim());
        println!("   without it:");
        show(&lab.split(&host, 200).await?);
        let routes = podgate_sim::Gvr::new("gateway.networking.k8s.io", "v1", "httproutes");
        let accepted = lab
            .eventually("the route's status", Duration::from_secs(20), || async {
                let route = lab.sim("idc").get(&routes, Some(NS), "api")?;
                let parent = route["status"]["parents"].get(0)?.clone();
                let c = parent["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Accepted")?
                    .clone();
                Some(format!(
                    "{} ({})",
                    c["status"].as_str()?,
                    c["reason"].as_str()?
                ))
            })
            .await?;
        println!(
            "   HTTPRoute shop/api status: Accepted {accepted}, written by podgate in both clusters"
        );
        self.canary = Some(canary);
        self.pause().await;
        Ok(())
    }

    /// A ramp from idc to tke through the admin API, as `podgate migrate` starts it.
    async fn migrate(&self) -> Result<(), LabError> {
        let (lab, host) = (&self.lab, self.host.as_str());
        let every = if self.pace.is_zero() { "200ms" } else { "2s" };
        say(&format!(
            "Migrate shop/web from idc to tke at run time: 25% every {every} (podgate migrate shop/web --to tke --step 25 --every {every})"
        ));
        let client = crate::cli::AdminClient::new(
            &format!("http://{}", lab.controller.admin_addr),
            Some(&self.token_file),
        )
        .map_err(|e| LabError::Demo(e.to_string()))?;
        client
            .migrate("shop/web", "tke", 25, every)
            .await
            .map_err(|e| LabError::Demo(e.to_string()))?;
        let mut last = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        loop {
            let view = client
                .get_weights()
                .await
                .map_err(|e| LabError::Demo(e.to_string()))?;
            let m = &view["migrations"]["shop/web"];
            let weights = m["weights"].as_str().unwrap_or("").to_owned();
            if weights != last {
                println!(
                    "   shop/web weights now {weights} ({})",
                    m["state"].as_str().unwrap_or("")
                );
                last = weights;
            }
            if m["state"] == "done" {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError::Timeout("the migration to finish".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        show(&lab.split(host, 200).await?);
        self.pause().await;
        say("Back to the Service's annotation: podgate weights set --clear --app shop/web");
        client
            .set_weights(&[], Some("shop/web"))
            .await
            .map_err(|e| LabError::Demo(e.to_string()))?;
        lab.eventually("80/20 again", Duration::from_secs(10), || async {
            let s = lab.split(host, 100).await.ok()?;
            (s.cluster("idc") >= 60).then_some(())
        })
        .await?;
        show(&lab.split(host, 200).await?);
        self.pause().await;
        Ok(())
    }

    async fn weights(&self) -> Result<(), LabError> {
        let (lab, host) = (&self.lab, self.host.as_str());
        say("Annotate the Service podgate.io/cluster-weights=idc=80,tke=20");
        let weighted = service(NS, "web")
            .port("http", 80)
            .annotate("podgate.io/cluster-weights", "idc=80,tke=20");
        lab.apply("idc", &weighted.build())?;
        lab.eventually("80/20 split", Duration::from_secs(10), || async {
            let s = lab.split(host, 100).await.ok()?;
            (s.cluster("idc") >= 65).then_some(())
        })
        .await?;
        show(&lab.split(host, 200).await?);
        self.pause().await;
        Ok(())
    }

    async fn scale_out(&mut self) -> Result<(), LabError> {
        say(
            "Scale out in tke behind podgate's readiness gate: the pod is Ready only once the LB holds it",
        );
        let (lab, host) = (&self.lab, self.host.as_str());
        let sim = lab.sim("tke");
        kubelet::namespace(sim, NS, true);
        println!(
            "   namespace {NS} labelled podgate.io/readiness-gate-inject=enabled; the pod carries the gate {}",
            crate::gate::CONDITION
        );
        self.kubelet = Some(kubelet::Kubelet::start(sim, NS, "web", "web", self.port));
        let pod = Pod::start("tke", "web-3", [127, 1, 2, 3].into(), self.port).await?;
        kubelet::pod(sim, NS, "web-3", "web", true);
        kubelet::start(sim, NS, "web-3", &pod.ip()).await;
        let started = std::time::Instant::now();
        self.gated.push(pod);
        println!("   tke/web-3 containers ready: not ready (waiting for the LB)");
        let message = lab
            .eventually("tke/web-3 registered", Duration::from_secs(20), || async {
                let (status, _, message) = kubelet::gate(sim, NS, "web-3")?;
                (status == "True").then_some(message)
            })
            .await?;
        lab.eventually("tke/web-3 Ready", Duration::from_secs(20), || async {
            kubelet::is_ready(sim, NS, "web-3").then_some(())
        })
        .await?;
        println!(
            "   tke/web-3 ready after {} ms: {message}",
            started.elapsed().as_millis()
        );
        lab.eventually("web-3 serving", Duration::from_secs(10), || async {
            let s = lab.split(host, 100).await.ok()?;
            s.by_pod.contains_key("tke/web-3").then_some(())
        })
        .await?;
        show(&lab.split(host, 200).await?);
        println!(
            "   gated pods: curl http://{}/v1/readiness-gate",
            lab.controller.admin_addr
        );
        self.pause().await;
        Ok(())
    }

    async fn drain(&self) -> Result<(), LabError> {
        let (lab, host) = (&self.lab, self.host.as_str());
        say("idc/web-1 is terminating: it drains (no new requests) while it finishes");
        lab.apply("idc", &endpoints("idc", &self.idc, &[], &["web-1"]))?;
        lab.eventually("idc/web-1 drained", Duration::from_secs(10), || async {
            let s = lab.split(host, 50).await.ok()?;
            (!s.by_pod.contains_key("idc/web-1")).then_some(())
        })
        .await?;
        show(&lab.split(host, 200).await?);
        self.pause().await;
        Ok(())
    }

    async fn failover(&mut self) -> Result<(), LabError> {
        say("idc scales to zero: tke takes all traffic, no request fails");
        let (lab, host) = (&self.lab, self.host.as_str());
        lab.apply("idc", &endpoints("idc", &[], &[], &[]))?;
        lab.eventually("failover to tke", Duration::from_secs(10), || async {
            let s = lab.split(host, 50).await.ok()?;
            (s.cluster("idc") == 0 && s.failed == 0).then_some(())
        })
        .await?;
        self.idc.clear();
        show(&self.lab.split(host, 200).await?);
        self.pause().await;
        Ok(())
    }

    async fn stale(&self) -> Result<(), LabError> {
        let (lab, host) = (&self.lab, self.host.as_str());
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
        show(&lab.split(host, 100).await?);
        let state = lab.admin_state().await?;
        for c in state["clusters"].as_array().into_iter().flatten() {
            println!("   cluster {}: {}", c["name"], c["state"]);
        }
        Ok(())
    }

    /// Until Ctrl-C: every few seconds a tke pod appears (not ready), becomes ready,
    /// later terminates and drains, and goes.
    async fn keep_scaling(&mut self) -> Result<(), LabError> {
        let host = self.host.clone();
        say("The app now scales up and down every few seconds; Ctrl-C stops the demo");
        println!(
            "   curl -H 'Host: {host}' http://{}/",
            self.lab.proxy.http_addr
        );
        let step = Duration::from_secs(3);
        let mut next: u8 = 4;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let (this, name) = (next, format!("web-{next}"));
            let cycle = async {
                self.tke
                    .extend(pods::start_many("tke", "web", 2, this, 1, self.port).await?);
                self.lab
                    .apply("tke", &endpoints("tke", &self.tke, &[&name], &[]))?;
                println!("   tke/{name} started (not ready: not registered)");
                tokio::time::sleep(step).await;
                self.lab
                    .apply("tke", &endpoints("tke", &self.tke, &[], &[]))?;
                println!("   tke/{name} ready: registered");
                show(&self.lab.split(&host, 50).await?);
                tokio::time::sleep(step * 2).await;
                self.lab
                    .apply("tke", &endpoints("tke", &self.tke, &[], &[&name]))?;
                println!("   tke/{name} terminating: draining");
                tokio::time::sleep(step).await;
                self.tke.retain(|p| p.name != name);
                self.lab
                    .apply("tke", &endpoints("tke", &self.tke, &[], &[]))?;
                println!("   tke/{name} gone: deregistered");
                Ok::<(), LabError>(())
            };
            let cycle = std::pin::pin!(cycle);
            tokio::select! {
                r = cycle => r?,
                _ = &mut ctrl_c => {
                    println!("\nstopping");
                    return Ok(());
                }
            }
            next = if next >= 250 { 4 } else { next + 1 };
        }
    }
}

/// podgate's GatewayClass, a Gateway with one HTTP listener and the HTTPRoute `api`.
fn gateway_objects(host: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "podgate"},
               "spec": {"controllerName": podgate_core::gateway::DEFAULT_CONTROLLER_NAME}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"namespace": NS, "name": "edge"},
               "spec": {"gatewayClassName": "podgate",
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": NS, "name": "api"},
        "spec": {"parentRefs": [{"name": "edge"}], "hostnames": [host],
                 "rules": [
                   {"matches": [{"headers": [{"name": "x-canary", "value": "true"}]}],
                    "backendRefs": [{"name": "canary", "port": 80}]},
                   {"backendRefs": [{"name": "web", "port": 80}]},
                 ]}}),
    ]
}
