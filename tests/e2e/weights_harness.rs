//! Shared set-up for the weights and migration end-to-end tests: a Lab (two simulated
//! clusters, the proxy, a controller) serving `shop/web` from two pods in each cluster,
//! and helpers that measure where real requests go.

use std::time::Duration;

use podgate::cli::AdminClient;
use podgate::controller::{self, RunOptions};
use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions, Split};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use serde_json::Value;

pub(crate) const HOST: &str = "shop.example.com";
pub(crate) const NS: &str = "shop";
pub(crate) const APP: &str = "shop/web";
/// Requests per measurement: at 50 % the standard deviation is 3.5 points.
pub(crate) const SAMPLE: usize = 200;
/// Allowed distance, in percentage points, between measured and expected shares.
pub(crate) const TOLERANCE: f64 = 10.0;
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct Scenario {
    pub(crate) lab: Lab,
    /// Kept so that idc's pods keep serving: dropping a `Pod` stops it.
    _idc: Vec<Pod>,
    pub(crate) tke: Vec<Pod>,
}

/// The app's EndpointSlice in `cluster`, every pod ready.
pub(crate) fn endpoints(
    cluster: &str,
    pods: &[Pod],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let mut s = slice(NS, &format!("web-{cluster}"), "web").port("http", port);
    for p in pods {
        s = s.ready(&p.ip());
    }
    s.build()
}

impl Scenario {
    /// Two pods per cluster, weights 100/100, every pod reachable through the proxy.
    /// `subnet` keeps the pods of tests running in parallel apart (127.1.subnet.x and
    /// 127.1.subnet+1.x).
    pub(crate) async fn start(subnet: u8) -> Self {
        let lab = Lab::start(LabOptions::default()).await.expect("lab");
        let port = pods::free_port().await.expect("port");
        let idc = pods::start_many("idc", "web", subnet, 1, 2, port)
            .await
            .expect("idc pods");
        let tke = pods::start_many("tke", "web", subnet + 1, 1, 2, port)
            .await
            .expect("tke pods");
        for (cluster, pods) in [("idc", &idc), ("tke", &tke)] {
            let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
            lab.sim(cluster).apply_json(namespace).expect("namespace");
            lab.apply(
                cluster,
                &default_class(ingress_class("podgate", &lab.config.controller_name)),
            )
            .expect("class");
            lab.apply(cluster, &service(NS, "web").port("http", 80).build())
                .expect("service");
            lab.apply(
                cluster,
                &ingress(NS, "web")
                    .route(HOST, "Prefix", "/", "web", 80)
                    .build(),
            )
            .expect("ingress");
            lab.apply(cluster, &endpoints(cluster, pods))
                .expect("slice");
        }
        lab.eventually("all four pods serving", WAIT, || async {
            let s = lab.split(HOST, 40).await.ok()?;
            (s.by_pod.len() == 4 && s.failed == 0).then_some(())
        })
        .await
        .expect("pods registered");
        Self {
            lab,
            _idc: idc,
            tke,
        }
    }

    /// A CLI client of the current controller.
    pub(crate) fn client(&self) -> AdminClient {
        AdminClient::new(&format!("http://{}", self.lab.controller.admin_addr), None)
            .expect("client")
    }

    /// Replaces the controller with a new one on the same configuration (and sims).
    pub(crate) async fn restart_controller(&mut self) {
        let options = RunOptions {
            events: true,
            ..RunOptions::default()
        };
        let fresh = controller::start(&self.lab.config, options)
            .await
            .expect("controller");
        // The old one is dropped only now; its tasks stop with it.
        self.lab.controller = fresh;
    }

    /// Measures until the tke share of requests is within [`TOLERANCE`] of `percent`,
    /// with no failed request; fails the test after [`WAIT`].
    pub(crate) async fn expect_tke_share(&self, percent: f64) -> Split {
        let what = format!("about {percent}% of requests in tke");
        let result = self
            .lab
            .eventually(&what, WAIT, || async {
                let s = self.lab.split(HOST, SAMPLE).await.ok()?;
                (s.failed == 0 && (tke_percent(&s) - percent).abs() <= TOLERANCE).then_some(s)
            })
            .await;
        match result {
            Ok(s) => s,
            Err(e) => {
                let last = self.lab.split(HOST, SAMPLE).await.ok();
                panic!("{e}; last measurement: {last:?}")
            }
        }
    }

    /// The data of the weights ConfigMap in the idc simulator.
    pub(crate) fn configmap(&self) -> Value {
        let gvr = podgate_sim::Gvr::new("", "v1", "configmaps");
        self.lab
            .sim("idc")
            .get(&gvr, Some("podgate-system"), "podgate-weights")
            .map_or(Value::Null, |cm| cm["data"].clone())
    }
}

/// Percent of the successful requests that tke served.
pub(crate) fn tke_percent(s: &Split) -> f64 {
    let total = s.by_cluster.values().sum::<usize>().max(1);
    #[allow(clippy::cast_precision_loss)]
    let p = s.cluster("tke") as f64 * 100.0 / total as f64;
    p
}

/// The controller's per-mille shares of `shop/web:80`, e.g. `idc=200,tke=800`.
pub(crate) fn shares(state: &Value) -> Option<String> {
    let up = state["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["key"]["namespace"] == NS && u["key"]["service"] == "web")?;
    let parts: Vec<String> = up["shares"]
        .as_array()?
        .iter()
        .map(|p| format!("{}={}", p[0].as_str().unwrap_or("?"), p[1]))
        .collect();
    Some(parts.join(","))
}
