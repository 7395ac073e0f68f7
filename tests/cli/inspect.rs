//! `podgate status`, `get`, `explain` and `why` as processes against a running Lab
//! (simulated clusters, controller, proxy, pods): what a person reads.

use podgate::demo::{Configure, Lab, LabOptions};

const HOST: &str = "cli.example.com";

async fn podgate(lab: &Lab, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_podgate"))
        .args(args)
        .env(
            "PODGATE_CONTROLLER",
            format!("http://{}", lab.controller.admin_addr),
        )
        .output()
        .await
        .expect("run podgate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_get_explain_and_why_read_like_kubectl() {
    let configure = Configure::new(|config, _| {
        config.clusters[0].routable_cidrs = Some(vec!["127.1.0.0/16".to_owned()]);
    });
    let lab = Lab::start(LabOptions {
        configure: Some(configure),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let (idc, _tke) = lab.deploy_pods("shop", HOST, 175, 1).await.unwrap();
    let port = idc[0].addr.port();
    let far = podgate_sim::objects::slice("shop", "web-far", "web")
        .port("http", port)
        .ready("10.98.0.7");
    lab.apply("idc", &far.build()).unwrap();

    let (code, out, err) = podgate(&lab, &["status"]).await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CLUSTER   STATE    SINCE"), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with("idc       synced")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("tke       synced")),
        "{out}"
    );
    assert!(
        out.contains("TARGET") && out.contains("proxy/http://"),
        "{out}"
    );
    assert!(out.contains("1 hosts, 1 upstreams, 2 endpoints"), "{out}");

    let (code, out, err) = podgate(&lab, &["get", "upstreams"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "UPSTREAM      HOSTS             SHARES            ACTIVE/PODS\nshop/web:80   {HOST}   idc=50%,tke=50%   2/3\n"
        )
    );
    let (_, out, _) = podgate(&lab, &["get", "hosts"]).await;
    assert_eq!(
        out,
        format!("HOST              PATH   UPSTREAM\n{HOST}   /*     shop/web:80\n")
    );
    let (_, out, _) = podgate(&lab, &["get", "pods", "-o", "wide", "-q", "tke"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CLUSTER   ADDRESS")
            && lines[0].ends_with("POD      NODE     ZONE     WEIGHT   GATE"),
        "{out}"
    );
    assert!(lines[1].starts_with("tke       127.1.176.1:"), "{out}");
    assert!(lines[1].contains("active   50%"), "{out}");
    // What the LB does not get is listed with why.
    let (_, out, _) = podgate(&lab, &["get", "pods", "-q", "10.98"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("idc       10.98.0.7   shop/web:80   unroutable   0%")),
        "{out}"
    );
    let (_, out, _) = podgate(&lab, &["get", "pods", "-o", "json"]).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["upstream"], "shop/web:80");

    let (code, out, _) = podgate(&lab, &["explain", &format!("https://{HOST}/anything")]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("Host:      {HOST}: exact")), "{out}");
    assert!(out.contains("decided by rule Prefix /"), "{out}");
    assert!(out.contains("Upstream:  shop/web:80"), "{out}");
    assert!(out.contains("Ingress:   shop/web in idc"), "{out}");
    assert!(out.contains("Pods that would serve it:"), "{out}");

    let (code, out, _) = podgate(&lab, &["why", "pod", "10.98.0.7"]).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("address 10.98.0.7:\n"), "{out}");
    assert!(
        out.contains("outside the cluster's routable networks (127.1.0.0/16"),
        "{out}"
    );
    let (_, out, _) = podgate(&lab, &["why", "pod", "shop/web-9"]).await;
    assert!(out.contains("no cluster has a pod shop/web-9"), "{out}");
    let (code, _, err) = podgate(&lab, &["why", "pod", "web-9"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("namespace/name or its IP"), "{err}");
}
