//! End to end, with live traffic: two controllers (different classes, different
//! owners) share one proxy. Each resyncs fully whenever it sees the other's pushes
//! (drift), and neither removes, replaces or fences what the other registered.

use std::time::Duration;

use podgate::controller::{self, Controller, RunOptions};
use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions};
use podgate::sync::SyncConfig;
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use serde_json::{Value, json};

const SHOP: &str = "shop.example.com";
const BLOG: &str = "blog.example.com";
const OTHER: &str = "other.example/ingress-controller";
const WAIT: Duration = Duration::from_secs(20);

fn sync() -> SyncConfig {
    SyncConfig {
        // Drift checks often: every push of one controller makes the other resync fully.
        drift_interval: Duration::from_millis(100),
        ..SyncConfig::default()
    }
}

/// A second controller on the same clusters and proxy, serving class `other`.
async fn second_controller(lab: &Lab) -> Controller {
    let mut config = lab.config.clone();
    OTHER.clone_into(&mut config.controller_name);
    "other".clone_into(&mut config.ingress_class);
    controller::start(
        &config,
        RunOptions {
            sync: sync(),
            events: false,
        },
    )
    .await
    .unwrap()
}

fn app(lab: &Lab, ns: &str, host: &str, class: &str, pods: &[Pod]) {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    lab.sim("idc").apply_json(namespace).unwrap();
    lab.apply("idc", &service(ns, "web").port("http", 80).build())
        .unwrap();
    lab.apply(
        "idc",
        &ingress(ns, "web")
            .class(class)
            .route(host, "Prefix", "/", "web", 80)
            .build(),
    )
    .unwrap();
    endpoints(lab, ns, pods);
}

fn endpoints(lab: &Lab, ns: &str, pods: &[Pod]) {
    let s = pods.iter().fold(
        slice(ns, "web-idc", "web").port("http", pods[0].addr.port()),
        |s, p| s.ready(&p.ip()),
    );
    lab.apply("idc", &s.build()).unwrap();
}

async fn pods_serving(lab: &Lab, host: &str, n: usize) -> Option<usize> {
    let split = lab.split(host, 10 * n).await.ok()?;
    (split.failed == 0).then_some(split.by_pod.len())
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Full pushes in a controller's audit ring, and what they removed.
fn full_pushes(state: &Value) -> Vec<Vec<String>> {
    state["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["full"] == true && e["result"] == "ok")
        .map(|e| {
            e["removed"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_one_proxy_keep_each_others_upstreams() {
    let lab = Lab::start(LabOptions {
        sync: sync(),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    lab.apply(
        "idc",
        &default_class(ingress_class("podgate", &lab.config.controller_name)),
    )
    .unwrap();
    lab.apply("idc", &ingress_class("other", OTHER)).unwrap();
    let port = pods::free_port().await.unwrap();
    let mut shop = pods::start_many("idc", "shop", 51, 1, 1, port)
        .await
        .unwrap();
    let mut blog = pods::start_many("idc", "blog", 52, 1, 1, port)
        .await
        .unwrap();
    app(&lab, "shop", SHOP, "podgate", &shop);
    app(&lab, "blog", BLOG, "other", &blog);

    lab.eventually("controller A serves shop", WAIT, || async {
        (pods_serving(&lab, SHOP, 1).await? == 1).then_some(())
    })
    .await
    .unwrap();
    let b = second_controller(&lab).await;
    let b_state = format!("http://{}/v1/state", b.admin_addr);
    lab.eventually(
        "controller B serves blog, A still serves shop",
        WAIT,
        || async {
            let both =
                pods_serving(&lab, BLOG, 1).await? == 1 && pods_serving(&lab, SHOP, 1).await? == 1;
            both.then_some(())
        },
    )
    .await
    .unwrap();

    // Each controller changes its app; each change makes the other resync fully.
    let a_full_before = full_pushes(&lab.admin_state().await.unwrap()).len();
    let b_full_before = full_pushes(&get(&http, b_state.clone()).await).len();
    shop.extend(
        pods::start_many("idc", "shop", 51, 2, 1, port)
            .await
            .unwrap(),
    );
    endpoints(&lab, "shop", &shop);
    blog.extend(
        pods::start_many("idc", "blog", 52, 2, 1, port)
            .await
            .unwrap(),
    );
    endpoints(&lab, "blog", &blog);
    lab.eventually("both controllers resynced fully since", WAIT, || async {
        let a = full_pushes(&lab.admin_state().await.ok()?).len();
        let b = full_pushes(&get(&http, b_state.clone()).await).len();
        (a > a_full_before && b > b_full_before).then_some(())
    })
    .await
    .unwrap();
    lab.eventually("both apps fully served", WAIT, || async {
        let both =
            pods_serving(&lab, SHOP, 2).await? == 2 && pods_serving(&lab, BLOG, 2).await? == 2;
        both.then_some(())
    })
    .await
    .unwrap();
    // Under continuous cross-resyncs, no request to either host fails.
    let failed = (
        lab.split(SHOP, 100).await.unwrap().failed,
        lab.split(BLOG, 100).await.unwrap().failed,
    );
    assert_eq!(failed, (0, 0));

    // No full resync of either removed the other's upstream; neither is fenced.
    let states = [
        (lab.admin_state().await.unwrap(), "blog/"),
        (get(&http, b_state).await, "shop/"),
    ];
    for (state, foreign) in &states {
        for removed in full_pushes(state) {
            assert!(
                removed.iter().all(|r| !r.starts_with(foreign)),
                "removed {removed:?}"
            );
        }
        assert_eq!(
            state["targets"][0]["state"], "in_sync",
            "{}",
            state["targets"]
        );
    }
    // The proxy records who registered what.
    assert_eq!(
        proxy_owners(&lab).await,
        [
            (OTHER.to_owned(), vec!["blog".to_owned()]),
            (lab.config.controller_name.clone(), vec!["shop".to_owned()]),
        ]
    );
}

/// `(owner, namespaces of its upstreams)` as the proxy reports them.
async fn proxy_owners(lab: &Lab) -> Vec<(String, Vec<String>)> {
    let proxy_state = lab.proxy_state().await.unwrap();
    proxy_state["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let keys = o["upstreams"].as_array().unwrap();
            let names = keys
                .iter()
                .map(|k| k["namespace"].as_str().unwrap().to_owned())
                .collect();
            (o["owner"].as_str().unwrap().to_owned(), names)
        })
        .collect()
}
