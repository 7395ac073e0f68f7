//! End to end, with live traffic through the proxy: the routability guard. idc has
//! `routable_cidrs: [127.1.31.0/24]`; tke has `routable_from: kube-ovn` and follows its
//! Subnets. Every pod is a live server, so a registered unroutable pod would be hit.

use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use podgate_sim::{Gvr, ResourceKind};
use serde_json::{Value, json};

const HOST: &str = "shop.example.com";
const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(20);

fn options() -> LabOptions {
    LabOptions {
        configure: Some(Configure::new(|config, sims| {
            config.clusters[0].routable_cidrs = Some(vec!["127.1.31.0/24".to_owned()]);
            config.clusters[1].routable_from =
                Some(podgate::controller::config::RoutableFrom::KubeOvn);
            sims[1].register(ResourceKind::custom(
                "kubeovn.io",
                "v1",
                "subnets",
                "Subnet",
                false,
            ));
        })),
        ..LabOptions::default()
    }
}

fn subnet(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
        "metadata": { "name": name },
        "spec": { "cidrBlock": cidr, "protocol": "Dual" }
    })
}

fn setup(lab: &Lab, idc: &[Pod], tke: &[Pod]) {
    for (cluster, pods) in [("idc", idc), ("tke", tke)] {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        lab.sim(cluster).apply_json(namespace).unwrap();
        lab.apply(
            cluster,
            &default_class(ingress_class("podgate", &lab.config.controller_name)),
        )
        .unwrap();
        lab.apply(cluster, &service(NS, "web").port("http", 80).build())
            .unwrap();
        lab.apply(
            cluster,
            &ingress(NS, "web")
                .route(HOST, "Prefix", "/", "web", 80)
                .build(),
        )
        .unwrap();
        let port = pods[0].addr.port();
        let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", port);
        for p in pods {
            s = s.ready(&p.ip());
        }
        lab.apply(cluster, &s.build()).unwrap();
    }
}

/// The pods that took requests, as `cluster/pod`, after `n` requests that all succeeded.
async fn serving(lab: &Lab, n: usize) -> Option<Vec<String>> {
    let split = lab.split(HOST, n).await.ok()?;
    (split.failed == 0).then(|| split.by_pod.keys().cloned().collect())
}

/// Reasons and messages of the admin view's diagnostics about `cluster`'s shop/web.
async fn diagnostics(lab: &Lab, cluster: &str) -> Vec<(String, String)> {
    let state = lab.admin_state().await.unwrap_or_default();
    state["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["object"]["cluster"] == cluster
                && d["object"]["kind"] == "Service"
                && d["object"]["name"] == "web"
        })
        .map(|d| {
            (
                d["reason"].as_str().unwrap_or("").to_owned(),
                d["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_endpoints_are_not_registered_and_are_reported() {
    let lab = Lab::start(options()).await.unwrap();
    let port = pods::free_port().await.unwrap();
    // idc: web-1 routable, web-2 outside 127.1.31.0/24.
    let mut idc = pods::start_many("idc", "web", 31, 1, 1, port)
        .await
        .unwrap();
    idc.extend(
        pods::start_many("idc", "web", 39, 2, 1, port)
            .await
            .unwrap(),
    );
    // tke: web-1 and web-2; its one Subnet covers only web-1 (dual stack).
    let tke = pods::start_many("tke", "web", 32, 1, 2, port)
        .await
        .unwrap();
    lab.sim("tke")
        .apply_json(subnet("ovn-default", "127.1.32.1/32,fd00:10:16::/64"))
        .unwrap();
    setup(&lab, &idc, &tke);

    let want = ["idc/web-1", "tke/web-1"];
    lab.eventually("only routable pods serve", WAIT, || async {
        (serving(&lab, 40).await? == want).then_some(())
    })
    .await
    .unwrap();
    // Many more requests: the unroutable pods never see one.
    assert_eq!(serving(&lab, 100).await.unwrap(), want);
    assert_eq!(idc[1].hits(), 0, "idc/web-2 is outside routable_cidrs");
    assert_eq!(tke[1].hits(), 0, "tke/web-2 is outside every Subnet");

    // Reported in the admin view, naming the address ...
    let idc_diag = lab
        .eventually("idc diagnostic", WAIT, || async {
            let d = diagnostics(&lab, "idc").await;
            (!d.is_empty()).then_some(d)
        })
        .await
        .unwrap();
    assert_eq!(idc_diag.len(), 1, "{idc_diag:?}");
    assert_eq!(idc_diag[0].0, "UnroutableEndpoint");
    assert!(idc_diag[0].1.contains("127.1.39.2"), "{idc_diag:?}");
    let tke_diag = diagnostics(&lab, "tke").await;
    assert!(
        tke_diag
            .iter()
            .any(|(r, m)| r == "UnroutableEndpoint" && m.contains("127.1.32.2")),
        "{tke_diag:?}"
    );
    // ... and as a Warning Event on the Service.
    let events = Gvr::new("events.k8s.io", "v1", "events");
    lab.eventually("Event on idc Service shop/web", WAIT, || async {
        lab.sim("idc")
            .list(&events, Some(NS))
            .iter()
            .any(|e| e["reason"] == "UnroutableEndpoint" && e["regarding"]["kind"] == "Service")
            .then_some(())
    })
    .await
    .unwrap();

    // The Subnet grows: tke/web-2 is registered.
    lab.sim("tke")
        .apply_json(subnet("ovn-default", "127.1.32.0/24,fd00:10:16::/64"))
        .unwrap();
    lab.eventually("tke/web-2 follows the Subnet", WAIT, || async {
        let pods = serving(&lab, 60).await?;
        (pods == ["idc/web-1", "tke/web-1", "tke/web-2"]).then_some(())
    })
    .await
    .unwrap();
    lab.eventually("tke report cleared", WAIT, || async {
        diagnostics(&lab, "tke").await.is_empty().then_some(())
    })
    .await
    .unwrap();

    // The Subnet goes away: nothing in tke is routable; idc takes everything, no failure.
    lab.sim("tke")
        .delete(
            &Gvr::new("kubeovn.io", "v1", "subnets"),
            None,
            "ovn-default",
        )
        .unwrap();
    lab.eventually("tke withdrawn", WAIT, || async {
        (serving(&lab, 40).await? == ["idc/web-1"]).then_some(())
    })
    .await
    .unwrap();

    // A second Subnet covering tke's pods brings them back.
    lab.sim("tke")
        .apply_json(subnet("apps", "127.1.32.0/28"))
        .unwrap();
    lab.eventually("tke back through a new Subnet", WAIT, || async {
        (serving(&lab, 60).await?.len() == 3).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_relist_that_would_unregister_the_cluster_is_held_until_confirmed() {
    let mut opts = options();
    opts.confirm_after = Duration::from_secs(2);
    let lab = Lab::start(opts).await.unwrap();
    let port = pods::free_port().await.unwrap();
    // idc routes 127.1.31.0/24 only (see `options`).
    let idc = pods::start_many("idc", "web", 31, 9, 1, port)
        .await
        .unwrap();
    let tke = pods::start_many("tke", "web", 35, 1, 2, port)
        .await
        .unwrap();
    setup(&lab, &idc, &tke);
    let subnets = Gvr::new("kubeovn.io", "v1", "subnets");
    lab.sim("tke")
        .apply_json(subnet("ovn-default", "127.1.35.0/24"))
        .unwrap();
    lab.eventually("all three pods serve", WAIT, || async {
        (serving(&lab, 60).await?.len() == 3).then_some(())
    })
    .await
    .unwrap();

    // tke's API server falters; meanwhile its only Subnet goes and the watch history is
    // lost, so the watcher learns it from a relist: one that would unregister every
    // tke endpoint. Held: tke keeps serving.
    // Open watches are cut too: no watch event may tell of the deletion.
    lab.sim("tke").fail_with(500);
    lab.sim("tke").drop_watches();
    lab.sim("tke")
        .delete(&subnets, None, "ovn-default")
        .unwrap();
    lab.sim("tke").expire_history();
    lab.sim("tke").clear_failure();
    lab.eventually("the held withdrawal is shown", WAIT, || async {
        let state = lab.admin_state().await.ok()?;
        let tke = state["clusters"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "tke")?
            .clone();
        (tke["guarded_relist"]["kind"] == "Subnet" && tke["guarded_relist"]["withdrawn"] == 2)
            .then_some(())
    })
    .await
    .unwrap();
    let held_since = std::time::Instant::now();
    let mut samples = 0;
    while held_since.elapsed() < Duration::from_secs(1) {
        // 120 requests: a pod that takes a quarter is missed by chance once in 10^15.
        let pods = serving(&lab, 120).await.expect("no request fails");
        assert_eq!(
            pods.len(),
            3,
            "tke unregistered without confirmation: {pods:?}"
        );
        samples += 1;
    }
    assert!(samples > 0);

    // The fresh list after `confirm_after` agrees: applied, idc takes everything.
    lab.eventually("tke withdrawn after confirmation", WAIT, || async {
        (serving(&lab, 40).await? == ["idc/web-9"]).then_some(())
    })
    .await
    .unwrap();
    let state = lab.admin_state().await.unwrap();
    let tke = state["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tke")
        .unwrap()
        .clone();
    assert!(tke["guarded_relist"].is_null(), "{tke}");
}
