//! Ingress status at scale (issue 12, fault 3): a first install, where every Ingress
//! awaits its `status.loadBalancer`, against a simulated API server that takes
//! `PG_BENCH_API_LATENCY_MS` (7) per request — about what a real kube-apiserver took
//! per status patch (137 patches/s one at a time). Measures when an Ingress created
//! during that backlog (once a tenth is written) gets its status, and when the whole backlog is done.
//!
//! ```sh
//! cargo bench --bench ingress_status     # PG_BENCH_INGRESSES (15000), PG_BENCH_NEW_AFTER_TENTHS (1)
//! ```
//!
//! Everything runs in this process on loopback (a `Lab`: simulated clusters, the
//! controller and the built-in proxy); no pod receives a request.

use std::time::{Duration, Instant};

use podgate::demo::{Lab, LabOptions};
use podgate_sim::Gvr;
use podgate_sim::objects::{default_class, ingress, ingress_class, service};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many Ingresses of `app` in idc show a load-balancer status, and whether `name`
/// does. Copies no object: the look must not slow the API server it measures.
fn with_status(lab: &Lab, name: &str) -> (usize, bool) {
    let gvr = Gvr::new("networking.k8s.io", "v1", "ingresses");
    let shown = |i: &serde_json::Value| i.pointer("/status/loadBalancer/ingress/0").is_some();
    let sim = lab.sim("idc");
    let named = sim.get(&gvr, Some("app"), name).is_some_and(|i| shown(&i));
    (sim.count(&gvr, Some("app"), shown), named)
}

fn main() {
    let ingresses = usize::try_from(env_u64("PG_BENCH_INGRESSES", 15_000)).unwrap_or(15_000);
    let latency = Duration::from_millis(env_u64("PG_BENCH_API_LATENCY_MS", 7));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async move {
        let lab = Lab::start(LabOptions::default()).await.expect("the lab");
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}});
        lab.sim("idc").apply_json(ns).expect("namespace");
        lab.apply("idc", &default_class(ingress_class("podgate", &lab.config.controller_name)))
            .expect("class");
        lab.apply("idc", &service("app", "web").port("http", 80).build())
            .expect("service");
        // A first install: the Ingresses exist before the controller lists them (the
        // cluster is away while they are created, then its watchers relist).
        lab.sim("idc").stop().await;
        for i in 0..ingresses {
            let host = format!("app-{i}.example.com");
            let ing = ingress("app", &format!("app-{i}")).route(&host, "Prefix", "/", "web", 80);
            lab.apply("idc", &ing.build()).expect("ingress");
        }
        lab.sim("idc").expire_history();
        lab.sim("idc").set_latency(latency);
        let started = Instant::now();
        lab.sim("idc").restart().await.expect("the API server back");
        // The backlog is being written (a tenth of it done): a user creates one more.
        // With `PG_BENCH_NEW_AFTER_TENTHS=0` it is created before the controller lists.
        let deadline = Instant::now() + Duration::from_mins(1);
        let written_first = ingresses / 10 * usize::try_from(env_u64("PG_BENCH_NEW_AFTER_TENTHS", 1)).unwrap_or(1);
        while with_status(&lab, "newest").0 < written_first && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let backlog = ingresses - with_status(&lab, "newest").0;
        let t_new = Instant::now();
        let newest = ingress("app", "newest").route("newest.example.com", "Prefix", "/", "web", 80);
        lab.apply("idc", &newest.build()).expect("ingress");
        let (mut newest_after, mut all_after) = (None, None);
        let deadline = Instant::now() + Duration::from_mins(3);
        while Instant::now() < deadline && (newest_after.is_none() || all_after.is_none()) {
            let (count, named) = with_status(&lab, "newest");
            if named && newest_after.is_none() {
                newest_after = Some(t_new.elapsed());
            }
            if count > ingresses && all_after.is_none() {
                all_after = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shown = |d: Option<Duration>| d.map_or_else(|| "never (180 s)".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        println!("{ingresses} Ingresses listed at once; API latency {latency:?} per request; {backlog} without status when one more was created");
        println!("| measure | target | result |");
        println!("|---|---|---|");
        println!("| an Ingress created during the backlog → its status | ≤ 2 s | {} |", shown(newest_after));
        println!("| all {} Ingresses → status (from the API server's return) | ≤ 60 s | {} |", ingresses + 1, shown(all_after));
    });
}
