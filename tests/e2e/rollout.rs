//! A rolling update of 10 pods under steady load through the built-in proxy, whose LB
//! acknowledges each push only after 2 s. A Deployment rolls like this one (maxSurge 1,
//! maxUnavailable 0): a new pod, and once it is Ready one old pod terminates, keeps
//! serving for its grace period, and goes. With podgate's readiness gate no request
//! fails; without it the rollout outruns the LB and requests fail — so the gate is
//! what makes the difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions};
use podgate_sim::objects::{default_class, ingress, ingress_class, service};

use crate::front_lb;
use podgate::demo::kubelet::{self, Kubelet};

const PODS: u8 = 10;
/// How long the LB takes to acknowledge each push.
const ACK: Duration = Duration::from_secs(2);
/// An old pod serves this long after it starts terminating (a short `preStop`).
const GRACE: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);

/// Requests sent and failed by the load's clients.
#[derive(Default)]
struct Load {
    sent: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
}

/// `clients` loops of GETs through the proxy until `load.stop`.
fn steady_load(
    lab: &Lab,
    host: &'static str,
    clients: usize,
    load: &Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = format!("http://{}/", lab.proxy.http_addr);
    (0..clients)
        .map(|_| {
            let (load, url) = (load.clone(), url.clone());
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            tokio::spawn(async move {
                while !load.stop.load(Ordering::Relaxed) {
                    let ok = match client.get(&url).header("host", host).send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    load.sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        load.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// The pod `name` running on `ip`: its backend and its object, containers ready.
async fn run_pod(lab: &Lab, name: &str, ip: [u8; 4], port: u16, gated: bool) -> Pod {
    let backend = Pod::start("idc", name, ip.into(), port).await.unwrap();
    kubelet::pod(lab.sim("idc"), "shop", name, "web", gated);
    kubelet::start(lab.sim("idc"), "shop", name, &backend.ip()).await;
    backend
}

async fn until_ready(lab: &Lab, name: &str) {
    lab.eventually(&format!("{name} Ready"), WAIT, || async {
        kubelet::is_ready(lab.sim("idc"), "shop", name).then_some(())
    })
    .await
    .unwrap();
}

/// Runs the rollout; returns (requests sent, failed).
async fn rollout(gated: bool, subnet: u8, host: &'static str) -> (usize, usize) {
    let lab = front_lb::slow_lab(ACK, |_, _| None, LabOptions::default()).await;
    let sim = lab.sim("idc");
    kubelet::namespace(sim, "shop", true);
    let class = default_class(ingress_class("podgate", &lab.config.controller_name));
    lab.apply("idc", &class).unwrap();
    lab.apply("idc", &service("shop", "web").port("http", 80).build())
        .unwrap();
    lab.apply(
        "idc",
        &ingress("shop", "web")
            .route(host, "Prefix", "/", "web", 80)
            .build(),
    )
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let _kubelet = Kubelet::start(sim, "shop", "web", "web", port);

    let mut old = Vec::new();
    for i in 1..=PODS {
        old.push(run_pod(&lab, &format!("v1-{i}"), [127, 1, subnet, i], port, gated).await);
    }
    for i in 1..=PODS {
        until_ready(&lab, &format!("v1-{i}")).await;
    }
    // Every old pod serving through the proxy before the load starts.
    lab.eventually("v1 served", WAIT, || async {
        let s = lab.split(host, 50).await.ok()?;
        (s.by_pod.len() == usize::from(PODS) && s.failed == 0).then_some(())
    })
    .await
    .unwrap();

    let load = Arc::new(Load::default());
    let clients = steady_load(&lab, host, 4, &load);
    let mut new = Vec::new();
    let mut leaving = Vec::new();
    for (i, old_pod) in (1..=PODS).zip(old) {
        let name = format!("v2-{i}");
        new.push(run_pod(&lab, &name, [127, 1, subnet + 1, i], port, gated).await);
        until_ready(&lab, &name).await;
        // The new pod is Ready: one old pod terminates and goes after its grace period.
        let old_name = format!("v1-{i}");
        kubelet::terminate(sim, "shop", &old_name);
        leaving.push(tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            drop(old_pod);
        }));
    }
    for task in leaving {
        task.await.unwrap();
    }
    // Their objects go too (the kubelet's grace period is over).
    for i in 1..=PODS {
        kubelet::gone(sim, "shop", &format!("v1-{i}"));
    }
    // The LB holds exactly the new pods, and the load ran on them for a moment.
    lab.eventually("only v2 in the proxy", WAIT, || async {
        let state = lab.proxy_state().await.ok()?;
        let addresses: Vec<String> = state["upstreams"]
            .as_array()?
            .iter()
            .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| e["address"].as_str().unwrap_or("").to_owned())
            .collect();
        let v2 = addresses
            .iter()
            .all(|a| a.starts_with(&format!("127.1.{}.", subnet + 1)));
        (v2 && addresses.len() == usize::from(PODS)).then_some(())
    })
    .await
    .unwrap();
    let settled = load.sent.load(Ordering::Relaxed);
    lab.eventually("load on v2", WAIT, || async {
        (load.sent.load(Ordering::Relaxed) > settled + 100).then_some(())
    })
    .await
    .unwrap();
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    drop(new);
    (
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_the_gate_fails_no_request_and_without_it_some() {
    let (sent, failed) = rollout(true, 160, "gated.example.com").await;
    println!("with the gate: {failed} of {sent} requests failed");
    assert!(sent > 1000, "too little load to tell: {sent}");
    assert_eq!(
        failed, 0,
        "with the gate: {failed} of {sent} requests failed"
    );

    let (sent, failed) = rollout(false, 162, "ungated.example.com").await;
    println!("without the gate: {failed} of {sent} requests failed");
    assert!(
        failed > 0,
        "without the gate nothing failed ({sent} requests): the test proves nothing"
    );
}
