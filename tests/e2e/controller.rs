//! The controller end to end: simulated API servers (the only test double) → real kube
//! watchers → Index → sync worker → the built-in proxy over its admin API → simulated
//! pods on 127.1.x.y, with live traffic.

use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions};
use podgate_sim::Gvr;
use podgate_sim::objects::ingress;

const HOST: &str = "shop.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn endpoints(cluster: &str, pods: &[Pod]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    pods::slice_of("shop", &format!("web-{cluster}"), "web", pods, &[])
}

/// A lab with shop/web routed in both clusters and `n` pods in each.
async fn shop(n: u8, subnet_base: u8) -> (Lab, Vec<Pod>, Vec<Pod>) {
    let lab = Lab::start(LabOptions::default()).await.unwrap();
    let (idc, tke) = lab.deploy_pods("shop", HOST, subnet_base, n).await.unwrap();
    (lab, idc, tke)
}

fn cluster_state(state: &serde_json::Value, name: &str) -> String {
    state["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .map_or_else(String::new, |c| {
            c["state"].as_str().unwrap_or("").to_owned()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_routes_to_pods_of_both_clusters_and_status_is_written() {
    let (lab, _idc, _tke) = shop(2, 11).await;
    let split = lab.split(HOST, 200).await.unwrap();
    assert_eq!(split.failed, 0);
    assert!(
        split.cluster("idc") > 50 && split.cluster("tke") > 50,
        "{split:?}"
    );
    let (status, _) = lab.get("unknown.example.com", "/").await.unwrap();
    assert_eq!(status, 404);
    // status.loadBalancer.ingress carries the publish address, in both clusters.
    let publish = lab.config.publish_addresses[0].clone();
    for cluster in ["idc", "tke"] {
        lab.eventually("Ingress status", WAIT, || async {
            let ing = lab.sim(cluster).get(
                &Gvr::new("networking.k8s.io", "v1", "ingresses"),
                Some("shop"),
                "web",
            )?;
            (ing.pointer("/status/loadBalancer/ingress/0/ip")?.as_str()? == publish).then_some(())
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_never_deregisters_endpoints_that_are_still_there() {
    let (lab, _idc, _tke) = shop(2, 13).await;
    let pushes_before = lab.admin_state().await.unwrap()["audit"]
        .as_array()
        .unwrap()
        .len();
    let lists_before = lab.sim("idc").stats().lists;
    // Every version expires: every idc watcher gets 410 and relists.
    lab.sim("idc").expire_history();
    lab.eventually("idc relisted", WAIT, || async {
        (lab.sim("idc").stats().lists >= lists_before + 5).then_some(())
    })
    .await
    .unwrap();
    let split = lab.split(HOST, 100).await.unwrap();
    assert_eq!(split.failed, 0);
    assert_eq!(split.by_pod.len(), 4, "{split:?}");
    // The relists returned the same objects: nothing was pushed at all.
    let audit = lab.admin_state().await.unwrap()["audit"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        audit.len(),
        pushes_before,
        "relist caused pushes: {:?}",
        &audit[pushes_before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_api_server_is_down_is_stale_keeps_its_endpoints_and_blocks_no_one() {
    let (lab, _idc, mut tke) = shop(1, 15).await;
    lab.sim("idc").stop().await;
    lab.eventually("idc stale", WAIT, || async {
        let state = lab.admin_state().await.ok()?;
        (cluster_state(&state, "idc") == "stale").then_some(())
    })
    .await
    .unwrap();
    let split = lab.split(HOST, 60).await.unwrap();
    assert_eq!(split.failed, 0);
    assert!(
        split.cluster("idc") > 0,
        "idc's last-known endpoints stay: {split:?}"
    );

    // tke scales out while idc is down: the new pod is registered.
    let port = tke[0].addr.port();
    tke.extend(
        pods::start_many("tke", "web", 16, 2, 1, port)
            .await
            .unwrap(),
    );
    lab.apply("tke", &endpoints("tke", &tke)).unwrap();
    lab.eventually("tke/web-2 serving", WAIT, || async {
        let s = lab.split(HOST, 40).await.ok()?;
        s.by_pod.contains_key("tke/web-2").then_some(())
    })
    .await
    .unwrap();

    // idc comes back: synced again.
    lab.sim("idc").restart().await.unwrap();
    lab.eventually("idc synced", WAIT, || async {
        let state = lab.admin_state().await.ok()?;
        (cluster_state(&state, "idc") == "synced").then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_becomes_a_kubernetes_event_and_changes_nothing_else() {
    let (lab, _idc, _tke) = shop(1, 17).await;
    let broken = ingress("shop", "broken").route("broken.example.com", "Prefix", "/", "ghost", 80);
    lab.apply("idc", &broken.build()).unwrap();
    let events = Gvr::new("events.k8s.io", "v1", "events");
    let event = lab
        .eventually("an Event", WAIT, || async {
            lab.sim("idc")
                .list(&events, Some("shop"))
                .into_iter()
                .find(|e| e["regarding"]["name"] == "broken" && e["reason"] == "UnknownService")
        })
        .await
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert!(
        event["note"].as_str().unwrap().contains("shop/ghost"),
        "{event}"
    );
    // Its host answers 503 with a reason; every other route is untouched.
    let (status, body) = lab.get("broken.example.com", "/").await.unwrap();
    assert_eq!(status, 503, "{body}");
    let split = lab.split(HOST, 40).await.unwrap();
    assert_eq!(split.failed, 0);
    let state = lab.admin_state().await.unwrap();
    let reasons: Vec<&str> = state["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["UnknownService"]);
}

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "clusters: [{name: idc}]\nunknown_field: 1\n",
            "unknown_field",
        ),
        ("clusters: [{name: idc}, {name: idc}]\n", "clusters[1].name"),
        (
            "clusters: [{name: idc, kubeconfig: /nonexistent}]\n",
            "clusters[0].kubeconfig",
        ),
        (
            "clusters: [{name: idc}]\ntargets: [{name: lb, kind: podgate, url: 'nope'}]\n",
            "url",
        ),
    ];
    for (yaml, field) in cases {
        let path = dir.path().join("podgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_podgate"))
            .args(["controller", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.contains(field),
            "{yaml}: {stderr} should name {field}"
        );
    }
}

#[test]
fn the_demo_runs_its_whole_scenario_without_a_failed_request() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podgate"))
        .args([
            "demo",
            "--once",
            "--fast",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--proxy-admin",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let splits: Vec<&str> = stdout.lines().filter(|l| l.contains("(failed: ")).collect();
    assert_eq!(splits.len(), 9, "{stdout}");
    assert!(splits.iter().all(|l| l.starts_with("   of ")), "{stdout}");
    assert!(
        stdout.contains("web UI:      http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("admin token: "), "{stdout}");
    assert!(
        stdout.contains("shop/web weights now idc=0,tke=100 (done)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tke/web-3 containers ready: not ready (waiting for the LB)"),
        "{stdout}"
    );
    assert!(
        splits.iter().all(|l| l.ends_with("(failed: 0)")),
        "{stdout}"
    );
    assert!(stdout.contains("cluster \"idc\": \"stale\""), "{stdout}");
    assert!(
        stdout.contains("with x-canary: true → tke canary-1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("HTTPRoute shop/api status: Accepted True (Accepted)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_of_the_controller_admin_api_are_capped_and_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let configure = podgate::demo::Configure::new(|config, _| {
        config.admin.max_connections = 4;
        config.admin.header_read_timeout = Duration::from_millis(500);
    });
    let lab = Lab::start(LabOptions {
        configure: Some(configure),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let addr = lab.controller.admin_addr;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf)).await;
    assert!(early.is_err(), "a connection over the admin cap was served");
    let n = tokio::time::timeout(Duration::from_millis(1_500), client.read(&mut buf))
        .await
        .expect("served within 1 s of the header-read timeout")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    for s in &mut silent {
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        assert!(closed.is_ok(), "a silent admin connection stayed open");
    }
}

/// `health_listen` serves probes and metrics without a token, and nothing else: the
/// write API stays on `admin.listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_serves_probes_and_metrics_but_no_admin_route() {
    let configure = podgate::demo::Configure::new(|config, _| {
        config.health_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    });
    let lab = Lab::start(LabOptions {
        configure: Some(configure),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let health = lab.controller.health_addr.expect("health listener bound");
    assert_ne!(health, lab.controller.admin_addr);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("http://{health}{path}"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("podgate_build_info"), "{metrics}");
    assert!(matches!(get("/readyz").await.0, 200 | 503));
    for route in ["/v1/state", "/v1/weights", "/v1/migrations", "/"] {
        let (status, body) = get(route).await;
        assert_eq!(status, 404, "{route} on the health listener: {body}");
    }
    let write = http
        .put(format!("http://{health}/v1/weights/global"))
        .body(r#"{"idc":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status().as_u16(),
        404,
        "a write reached the health listener"
    );
}
