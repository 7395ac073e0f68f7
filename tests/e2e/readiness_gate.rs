//! The readiness gate `podgate.io/lb-registered` end to end: simulated API server (with
//! the `kubelet` test double) → controller → built-in proxy. A gated pod is registered
//! while not Ready and becomes Ready once every LB target holds it; a target that never
//! acknowledges holds it only until `readiness_gate.timeout`; pods podgate does not
//! route, pods outside opted-in namespaces and terminating pods are left alone; the
//! webhook answers the API server's AdmissionReviews (k8s-wire 20b/20c).

use std::time::Duration;

use podgate::controller::config::WebhookConfig;
use podgate::demo::pods::{self, Pod};
use podgate::demo::{Configure, Lab, LabOptions};
use podgate::lb::config::{Target, TargetKind};
use podgate_sim::Gvr;
use podgate_sim::objects::{default_class, ingress, ingress_class, service};
use serde_json::{Value, json};

use podgate::demo::kubelet::{self, Kubelet};

const WAIT: Duration = Duration::from_secs(20);

/// A Lab whose controller gives up on an LB after `timeout`.
async fn lab(timeout: Duration, extra_targets: Vec<Target>) -> Lab {
    let configure = Configure::new(move |config, _| config.readiness_gate.timeout = timeout);
    Lab::start(LabOptions {
        configure: Some(configure),
        extra_targets,
        ..LabOptions::default()
    })
    .await
    .unwrap()
}

/// podgate routes `host` to Service `web` of `ns`.
fn route(lab: &Lab, ns: &str, host: &str) {
    let class = default_class(ingress_class("podgate", &lab.config.controller_name));
    lab.apply("idc", &class).unwrap();
    lab.apply("idc", &service(ns, "web").port("http", 80).build())
        .unwrap();
    lab.apply(
        "idc",
        &ingress(ns, "web")
            .route(host, "Prefix", "/", "web", 80)
            .build(),
    )
    .unwrap();
}

/// A running backend and its pod object, containers ready.
async fn gated_pod(lab: &Lab, ns: &str, name: &str, ip: [u8; 4], port: u16, gated: bool) -> Pod {
    let backend = Pod::start("idc", name, ip.into(), port).await.unwrap();
    kubelet::pod(lab.sim("idc"), ns, name, "web", gated);
    kubelet::start(lab.sim("idc"), ns, name, &backend.ip()).await;
    backend
}

async fn gate_is(lab: &Lab, ns: &str, name: &str, status: &str, reason: &str) -> String {
    let what = format!("{ns}/{name}: gate {status} {reason}");
    lab.eventually(&what, WAIT, || async {
        let (s, r, m) = kubelet::gate(lab.sim("idc"), ns, name)?;
        (s == status && r == reason).then_some(m)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_pod_is_served_before_it_is_ready_and_ready_once_every_target_holds_it() {
    let lab = lab(Duration::from_mins(1), Vec::new()).await;
    let sim = lab.sim("idc");
    kubelet::namespace(sim, "gated", true);
    kubelet::namespace(sim, "plain", false);
    route(&lab, "gated", "gated.example.com");
    route(&lab, "plain", "plain.example.com");
    let port = pods::free_port().await.unwrap();
    let _kubelets = [
        Kubelet::start(sim, "gated", "web", "web", port),
        Kubelet::start(sim, "plain", "web", "web", port),
    ];
    // Outside an opted-in namespace a gate is nobody's business: it stays unset.
    let _plain = gated_pod(&lab, "plain", "web-1", [127, 1, 150, 2], port, true).await;
    let _web = gated_pod(&lab, "gated", "web-1", [127, 1, 150, 1], port, true).await;

    let message = gate_is(&lab, "gated", "web-1", "True", "Registered").await;
    assert!(
        message.starts_with("registered on every LB target: proxy/http://127.0.0.1:"),
        "{message}"
    );
    lab.eventually("the pod Ready", WAIT, || async {
        kubelet::is_ready(sim, "gated", "web-1").then_some(())
    })
    .await
    .unwrap();
    let (status, body) = lab.get("gated.example.com", "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "idc web-1\n"));
    assert_eq!(kubelet::gate(sim, "plain", "web-1"), None);
    assert!(!kubelet::is_ready(sim, "plain", "web-1"));
    // The admin view shows it as an operator reads it.
    let view = lab.admin_json("/v1/readiness-gate").await.unwrap();
    assert_eq!(view["namespaces"]["idc"], json!(["gated"]));
    let pod = &view["pods"][0];
    assert_eq!(
        (
            &pod["cluster"],
            &pod["namespace"],
            &pod["name"],
            &pod["address"]
        ),
        (
            &json!("idc"),
            &json!("gated"),
            &json!("web-1"),
            &json!("127.1.150.1")
        )
    );
    assert_eq!(pod["state"], "ready");
    assert_eq!(pod["reason"], "Registered");
    assert_eq!(view["pods"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_acknowledges_holds_the_gate_only_until_the_timeout() {
    // An LB nobody listens on: every push fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let stuck = Target {
        url: Some(url),
        ..Target::new("stuck", TargetKind::Podgate)
    };
    let lab = lab(Duration::from_secs(2), vec![stuck]).await;
    let sim = lab.sim("idc");
    kubelet::namespace(sim, "gated", true);
    route(&lab, "gated", "stuck.example.com");
    let port = pods::free_port().await.unwrap();
    let _kubelet = Kubelet::start(sim, "gated", "web", "web", port);

    // web-0 first: its timeout comes before web-1's.
    let _leaving = gated_pod(&lab, "gated", "web-0", [127, 1, 151, 1], port, true).await;
    // The proxy acknowledges; the message then names only the stuck target.
    lab.eventually("web-0 waits for stuck alone", WAIT, || async {
        let (s, r, m) = kubelet::gate(sim, "gated", "web-0")?;
        (s == "False"
            && r == "WaitingForLb"
            && m.starts_with("not yet acknowledged by: stuck/http://"))
        .then_some(())
    })
    .await
    .unwrap();
    // A pod that starts terminating is never gated again.
    kubelet::terminate(sim, "gated", "web-0");

    let _web = gated_pod(&lab, "gated", "web-1", [127, 1, 151, 2], port, true).await;
    gate_is(&lab, "gated", "web-1", "False", "WaitingForLb").await;
    lab.eventually("the admin view shows web-1 waiting", WAIT, || async {
        let view = lab.admin_json("/v1/readiness-gate").await.ok()?;
        let pods = view["pods"].as_array()?.clone();
        pods.into_iter()
            .find(|p| p["name"] == "web-1" && p["state"] == "not ready (waiting for the LB)")
    })
    .await
    .unwrap();
    let message = gate_is(&lab, "gated", "web-1", "True", "LbRegistrationTimeout").await;
    assert!(
        message.starts_with(
            "not registered within 2s (WaitingForLb: not yet acknowledged by: stuck/http://"
        ),
        "{message}"
    );
    let events = Gvr::new("events.k8s.io", "v1", "events");
    let warning = lab
        .eventually("the Warning Event", WAIT, || async {
            sim.list(&events, Some("gated"))
                .into_iter()
                .find(|e| e["reason"] == "LbRegistrationTimeout")
        })
        .await
        .unwrap();
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["regarding"]["name"], "web-1");
    assert_eq!(warning["regarding"]["kind"], "Pod");
    assert_eq!(warning["note"].as_str(), Some(message.as_str()));
    let metrics = lab.controller_metrics().await.unwrap();
    assert!(
        metrics.contains("podgate_readiness_gate_timeouts_total{cluster=\"idc\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podgate_readiness_gate_pods{cluster=\"idc\",state=\"terminating\"} 1\n")
    );
    let (status, reason, _) = kubelet::gate(sim, "gated", "web-0").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "WaitingForLb")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_services_podgate_does_not_route_is_not_held() {
    let lab = lab(Duration::from_mins(1), Vec::new()).await;
    let sim = lab.sim("idc");
    kubelet::namespace(sim, "batch", true);
    let port = pods::free_port().await.unwrap();
    let _kubelet = Kubelet::start(sim, "batch", "web", "worker", port);
    let _worker = gated_pod(&lab, "batch", "worker-1", [127, 1, 152, 1], port, true).await;
    let message = gate_is(&lab, "batch", "worker-1", "True", "NotRouted").await;
    assert_eq!(message, "no podgate route uses this pod's Services");
}

/// The AdmissionReview the API server sent (k8s-wire 20b), with `namespace` and
/// `readinessGates` set as given.
fn review(namespace: &str, gates: Option<Value>) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/podgate-sim/tests/fixtures/k8s-wire/20b-webhook-admissionreview-request.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with('{')).unwrap();
    let mut review: Value = serde_json::from_str(line).unwrap();
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    if let Some(gates) = gates {
        review["request"]["object"]["spec"]["readinessGates"] = gates;
    }
    review
}

/// A Lab whose controller serves the webhook with a self-signed certificate, the
/// namespaces `shop-gated` (opted in) and `shop`, and a client trusting it with the URL
/// the API server would call.
async fn webhook_lab(dir: &std::path::Path) -> (Lab, reqwest::Client, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let webhook = WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_file,
        key_file,
    };
    let configure = Configure::new(move |config, _| {
        config.readiness_gate.webhook = Some(webhook.clone());
    });
    let lab = Lab::start(LabOptions {
        configure: Some(configure),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    kubelet::namespace(lab.sim("idc"), "shop-gated", true);
    kubelet::namespace(lab.sim("idc"), "shop", false);
    let addr = lab.controller.webhook_addr.expect("the webhook listens");
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    (
        lab,
        client,
        format!("https://{addr}/mutate/pods?timeout=5s"),
    )
}

/// The JSON patch of an AdmissionReview answer.
fn patch_of(answer: &Value) -> Value {
    use base64::Engine as _;
    let encoded = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_adds_the_gate_once_to_pods_of_opted_in_namespaces_and_never_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, client, url) = webhook_lab(dir.path()).await;
    let post = |body: Vec<u8>| {
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("user-agent", "kube-apiserver-admission")
            .body(body);
        async move {
            let started = std::time::Instant::now();
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "answered in {:?}",
                started.elapsed()
            );
            (status, text)
        }
    };
    let answer = |text: &str| -> Value { serde_json::from_str(text).unwrap() };

    // The Namespace watch has seen the label: the recorded request gets 20c's answer.
    let recorded = review("shop-gated", None);
    let uid = recorded["request"]["uid"].clone();
    let gated = lab
        .eventually("the gate added", WAIT, || async {
            let (status, text) = post(serde_json::to_vec(&recorded).unwrap()).await;
            assert_eq!(status, 200, "{text}");
            let a = answer(&text);
            a["response"].get("patch").is_some().then_some(a)
        })
        .await
        .unwrap();
    assert_eq!(gated["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(gated["kind"], "AdmissionReview");
    assert_eq!(gated["response"]["uid"], uid);
    assert_eq!(gated["response"]["allowed"], true);
    assert_eq!(gated["response"]["patchType"], "JSONPatch");
    assert_eq!(
        patch_of(&gated),
        json!([{ "op": "add", "path": "/spec/readinessGates", "value": [{ "conditionType": "podgate.io/lb-registered" }] }])
    );

    // Allowed without a patch: another namespace, a pod that has the gate already.
    let others = [
        review("shop", None),
        review(
            "shop-gated",
            Some(json!([{ "conditionType": "podgate.io/lb-registered" }])),
        ),
    ];
    for other in others {
        let (status, text) = post(serde_json::to_vec(&other).unwrap()).await;
        assert_eq!(status, 200);
        let a = answer(&text);
        assert_eq!(a["response"]["allowed"], true, "{text}");
        assert!(a["response"].get("patch").is_none(), "{text}");
    }
    // The gate is appended to gates of others.
    let (_, text) = post(
        serde_json::to_vec(&review(
            "shop-gated",
            Some(json!([{ "conditionType": "other.io/ready" }])),
        ))
        .unwrap(),
    )
    .await;
    assert_eq!(
        patch_of(&answer(&text)),
        json!([{ "op": "add", "path": "/spec/readinessGates/-", "value": { "conditionType": "podgate.io/lb-registered" } }])
    );
    // A configuration per cluster names its cluster: shop-gated is opted in in idc only.
    let per_cluster =
        |cluster: &str| url.replace("/mutate/pods?", &format!("/mutate/pods/{cluster}?"));
    for (cluster, patched) in [("idc", true), ("tke", false)] {
        let answer = client
            .post(per_cluster(cluster))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&review("shop-gated", None)).unwrap())
            .send()
            .await
            .unwrap();
        let a: Value = answer.json().await.unwrap();
        assert_eq!(
            a["response"].get("patch").is_some(),
            patched,
            "{cluster}: {a}"
        );
    }
    let unknown = client
        .post(per_cluster("aws"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    // What is not an AdmissionReview is a 400 with a reason (the API server then fails
    // open, `failurePolicy: Ignore`).
    let (status, text) = post(b"{\"kind\":".to_vec()).await;
    assert_eq!(status, 400);
    assert!(text.starts_with("not an AdmissionReview"), "{text}");
}
