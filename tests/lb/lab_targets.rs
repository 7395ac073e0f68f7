//! Real HAProxy and Caddy driven end to end from the simulated clusters: objects applied
//! to the simulated API servers → controller → the adapters → `haproxy` / `caddy`
//! processes on loopback → simulated pods on 127.1.x.y. Routing by host and path,
//! scale-out, drain, removal, weights, LB restarts repaired by drift detection, and a
//! target with two instances of which one dies, is reported, and catches up.
//!
//! Needs `haproxy` and `caddy` (`apt-get install -y haproxy caddy`): without them the
//! tests say so loudly and pass, except under `CI=true`, where they fail.

use crate::harness::{self, eventually, free_addr, get};
use crate::programs::{Caddy, Haproxy};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions};
use podgate::lb::config::{Target, TargetKind};
use podgate::sync::SyncConfig;
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};

const WAIT: Duration = Duration::from_secs(40);
const HOST: &str = "app.e2e.test";
/// HAProxy loads `<dir>/podgate.cfg` for each: the first controller's and a second's.
const OWNER_DIRS: [&str; 2] = ["podgate", "podgate-b"];

// ---------------------------------------------------------------------------------
// The LB processes (started without an adapter: the controller builds the adapters)

/// A `haproxy -W` whose podgate files (one per controller, see [`OWNER_DIRS`]) start
/// empty: the controller's first batch renders its own and reloads.
fn haproxy() -> Haproxy {
    Haproxy::new(false, &OWNER_DIRS)
}

/// podgate's servers in `h` that take or finish traffic: `address:port` → drained?
async fn haproxy_servers(h: &Haproxy) -> Result<BTreeMap<String, bool>, String> {
    let answer = h
        .runtime()
        .raw("show servers state")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for line in answer.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 19 || !f[3].starts_with("pg-") {
            continue;
        }
        let admin: u32 = f[6].parse().map_err(|_| format!("bad line {line}"))?;
        // Maintenance (deleted, deletion deferred) is not serving.
        if admin & (0x01 | 0x02 | 0x04 | 0x20) == 0 {
            out.insert(format!("{}:{}", f[4], f[18]), admin & (0x08 | 0x10) != 0);
        }
    }
    Ok(out)
}

/// The dial addresses of podgate's upstreams in `c` (Caddy has no drain state:
/// `false`). The controller pushes with an owner, so its ids are `podgate-o<tag>-…`.
async fn caddy_servers(c: &Caddy) -> Result<BTreeMap<String, bool>, String> {
    let body = c
        .client()
        .request("GET", "/config/apps/http/servers", None)
        .await
        .map_err(|e| e.to_string())?;
    let servers: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let routes = servers
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|s| s["routes"].as_array().into_iter().flatten());
    for route in routes {
        if !route["@id"]
            .as_str()
            .is_some_and(|id| id.starts_with("podgate-") && id.contains("-up-"))
        {
            continue;
        }
        for u in route["handle"][0]["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(d) = u["dial"].as_str() {
                out.insert(d.to_owned(), false);
            }
        }
    }
    Ok(out)
}

/// Instances of one kind that share a listen address (`SO_REUSEPORT`, which both
/// programs set, spreads connections over the live ones).
fn haproxy_target(name: &str, lb: SocketAddr, instances: &[&Haproxy]) -> Target {
    Target {
        sockets: instances
            .iter()
            .map(|h| h.path("rt.sock").display().to_string())
            .collect(),
        master_sockets: instances
            .iter()
            .map(|h| h.path("master.sock").display().to_string())
            .collect(),
        config_dirs: instances.iter().map(|h| h.path("podgate")).collect(),
        listen: vec![lb],
        min_reload_interval_ms: Some(100),
        ..Target::new(name, TargetKind::Haproxy)
    }
}

fn caddy_target(name: &str, lb: SocketAddr, instances: &[&Caddy]) -> Target {
    Target {
        urls: instances
            .iter()
            .map(|c| format!("http://{}", c.admin))
            .collect(),
        listen: vec![lb],
        ..Target::new(name, TargetKind::Caddy)
    }
}

/// Routing listeners for one HAProxy and one Caddy (see [`free_addr`]).
fn lb_addrs() -> (SocketAddr, SocketAddr) {
    (free_addr(), free_addr())
}

fn fast_sync() -> SyncConfig {
    SyncConfig {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        drift_interval: Duration::from_millis(200),
    }
}

// ---------------------------------------------------------------------------------
// The application in the simulated clusters

/// The EndpointSlice of `app` in `cluster` with these pods (names in `draining` are
/// terminating).
fn endpoints(
    cluster: &str,
    app: &str,
    pods: &[&Pod],
    draining: &[&str],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let s = slice("app", &format!("{app}-{cluster}"), app).port("http", port);
    pods.iter()
        .fold(s, |s, p| {
            if draining.contains(&p.name.as_str()) {
                s.terminating(&p.ip())
            } else {
                s.ready(&p.ip())
            }
        })
        .build()
}

/// Namespace, class, Services `web` and `api` and the Ingress, in both clusters:
/// `app.e2e.test` `/` → web, `/api` → api; `*.wild.e2e.test` → api;
/// `exact.e2e.test` `=/only` → api.
fn apply_app(lab: &Lab) {
    for cluster in ["idc", "tke"] {
        lab.sim(cluster)
            .apply_json(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}))
            .unwrap();
        lab.apply(
            cluster,
            &default_class(ingress_class("podgate", &lab.config.controller_name)),
        )
        .unwrap();
        for svc in ["web", "api"] {
            lab.apply(cluster, &service("app", svc).port("http", 80).build())
                .unwrap();
        }
        lab.apply(
            cluster,
            &ingress("app", "web")
                .route(HOST, "Prefix", "/", "web", 80)
                .route(HOST, "Prefix", "/api", "api", 80)
                .route("*.wild.e2e.test", "Prefix", "/", "api", 80)
                .route("exact.e2e.test", "Exact", "/only", "api", 80)
                .build(),
        )
        .unwrap();
    }
}

/// Answers of `n` requests through `lb` by body (`"idc web-1"`), failures as
/// `"HTTP 503 …"` / `"error: …"`.
async fn spread(lb: SocketAddr, host: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match get(lb, host, "/").await {
            Ok((200, body)) => body.trim().to_owned(),
            Ok((status, body)) => format!("HTTP {status} {}", body.trim()),
            Err(e) => format!("error: {e}"),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Waits until `n` requests through `lb` are all answered, by exactly `want`.
async fn serves_exactly(lab: &Lab, what: &str, lb: SocketAddr, want: &[&Pod]) {
    let want: BTreeSet<String> = want
        .iter()
        .map(|p| format!("{} {}", p.cluster, p.name))
        .collect();
    eventually(what, WAIT, || {
        let want = want.clone();
        async move {
            let got = spread(lb, HOST, 12 * want.len()).await;
            let names: BTreeSet<String> = got.keys().cloned().collect();
            if names == want {
                Ok(())
            } else {
                let targets = targets(lab).await;
                Err(format!(
                    "answers {got:?}, want {want:?}; targets: {targets}"
                ))
            }
        }
    })
    .await;
}

fn addr_of(p: &Pod) -> String {
    p.addr.to_string()
}

/// The controller's `GET /v1/targets`.
async fn targets(lab: &Lab) -> serde_json::Value {
    let url = format!("http://{}/v1/targets", lab.controller.admin_addr);
    match reqwest::get(url).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => serde_json::Value::String(e.to_string()),
    }
}

/// The controller's `GET /v1/targets` entry whose name ends with `suffix`.
async fn target_status(lab: &Lab, suffix: &str) -> Result<serde_json::Value, String> {
    let url = format!("http://{}/v1/targets", lab.controller.admin_addr);
    let list: serde_json::Value = reqwest::get(url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
        .cloned()
        .ok_or_else(|| format!("no target ending in {suffix}: {list}"))
}

async fn target_state_is(
    lab: &Lab,
    suffix: &str,
    state: &str,
) -> Result<serde_json::Value, String> {
    let t = target_status(lab, suffix).await?;
    if t["state"] == state {
        Ok(t)
    } else {
        Err(format!("want {state}: {t}"))
    }
}

macro_rules! require_lbs {
    () => {
        if !harness::require_program("haproxy") || !harness::require_program("caddy") {
            return;
        }
    };
}

// ---------------------------------------------------------------------------------
// Tests

/// One HAProxy and one Caddy (one instance each) beside the lab's proxy; `web` with
/// pods idc web-1, web-2 and tke web-1, web-2 (idc web-3 started but not in the slice
/// yet) and `api` with idc api-1, all served.
struct World {
    lab: Lab,
    h: Haproxy,
    c: Caddy,
    lbs: [(&'static str, SocketAddr); 2],
    idc: Vec<Pod>,
    tke: Vec<Pod>,
    api: Vec<Pod>,
}

async fn world(subnet: u8) -> World {
    let (h_lb, c_lb) = lb_addrs();
    let mut h = haproxy();
    h.launch().await;
    let mut c = Caddy::new(false);
    c.launch().await;
    let lab = Lab::start(LabOptions {
        sync: fast_sync(),
        extra_targets: vec![
            haproxy_target("hap", h_lb, &[&h]),
            caddy_target("cdy", c_lb, &[&c]),
        ],
        // Both clusters serve the Gateway API.
        configure: Some(podgate::demo::Configure::new(|_, sims| {
            for sim in sims {
                sim.register_crds(podgate_sim::GATEWAY_API_CRDS).unwrap();
            }
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let idc = pods::start_many("idc", "web", subnet, 1, 3, port)
        .await
        .unwrap();
    let tke = pods::start_many("tke", "web", subnet + 1, 1, 2, port)
        .await
        .unwrap();
    let api = pods::start_many("idc", "api", subnet + 2, 1, 1, port)
        .await
        .unwrap();
    apply_app(&lab);
    lab.apply("idc", &endpoints("idc", "web", &[&idc[0], &idc[1]], &[]))
        .unwrap();
    lab.apply("tke", &endpoints("tke", "web", &[&tke[0], &tke[1]], &[]))
        .unwrap();
    lab.apply("idc", &endpoints("idc", "api", &[&api[0]], &[]))
        .unwrap();
    let lbs = [("haproxy", h_lb), ("caddy", c_lb)];
    for (name, lb) in lbs {
        serves_exactly(
            &lab,
            &format!("{name} serves the four web pods"),
            lb,
            &[&idc[0], &idc[1], &tke[0], &tke[1]],
        )
        .await;
    }
    World {
        lab,
        h,
        c,
        lbs,
        idc,
        tke,
        api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_and_caddy_route_by_host_and_path_and_split_by_weight() {
    require_lbs!();
    // The pods must outlive the checks: dropping one stops it.
    let World {
        lab,
        lbs,
        h,
        c,
        idc: _idc,
        tke: _tke,
        api: _api,
    } = world(41).await;
    let h_lb = lbs[0].1;
    // Routing by host and path (the api pod answers "idc api-1").
    let port_host = format!("APP.E2E.test:{}", h_lb.port());
    let cases: [(&str, &str, Option<&str>); 9] = [
        (HOST, "/api", Some("idc api-1")),
        (HOST, "/api/v1/x", Some("idc api-1")),
        (HOST, "/apix", Some("web")),
        (&port_host, "/api", Some("idc api-1")),
        ("x.wild.e2e.test", "/anything", Some("idc api-1")),
        ("a.b.wild.e2e.test", "/", None),
        ("exact.e2e.test", "/only", Some("idc api-1")),
        ("exact.e2e.test", "/only/", None),
        ("unknown.e2e.test", "/", None),
    ];
    let (h, c) = (&h, &c);
    for (name, lb) in lbs {
        eventually(
            &format!("{name} routes by host and path"),
            WAIT,
            || async move {
                let servers = if name == "haproxy" {
                    haproxy_servers(h).await
                } else {
                    caddy_servers(c).await
                };
                for (host, path, want) in cases {
                    let (status, body) = get(lb, host, path).await?;
                    let ok = match want {
                        Some("web") => status == 200 && body.contains(" web-"),
                        Some(w) => status == 200 && body.trim() == w,
                        None => status == 404,
                    };
                    if !ok {
                        return Err(format!(
                            "{host}{path}: {status} {body:?}, want {want:?}; servers {servers:?}"
                        ));
                    }
                }
                Ok(())
            },
        )
        .await;
    }

    // Weights across clusters: idc=25, tke=75 (two pods each).
    lab.apply(
        "tke",
        &service("app", "web")
            .port("http", 80)
            .annotate("podgate.io/cluster-weights", "idc=25,tke=75")
            .build(),
    )
    .unwrap();
    for (name, lb) in lbs {
        eventually(&format!("{name} splits 25/75"), WAIT, || async move {
            let got = spread(lb, HOST, 200).await;
            let tke: usize = got
                .iter()
                .filter(|(k, _)| k.starts_with("tke "))
                .map(|(_, n)| n)
                .sum();
            let idc: usize = got
                .iter()
                .filter(|(k, _)| k.starts_with("idc "))
                .map(|(_, n)| n)
                .sum();
            if idc + tke == 200 && (130..=170).contains(&tke) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_and_caddy_follow_scale_out_drain_and_removal() {
    require_lbs!();
    let World {
        lab,
        h,
        c,
        lbs,
        idc,
        tke,
        api,
    } = world(51).await;
    // Scale-out: a third idc pod.
    lab.apply(
        "idc",
        &endpoints("idc", "web", &[&idc[0], &idc[1], &idc[2]], &[]),
    )
    .unwrap();
    for (name, lb) in lbs {
        serves_exactly(
            &lab,
            &format!("{name} serves the scaled-out pod"),
            lb,
            &[&idc[0], &idc[1], &idc[2], &tke[0], &tke[1]],
        )
        .await;
    }

    // Drain: web-1 terminating → HAProxy drains it, Caddy drops it; no new requests.
    lab.apply(
        "idc",
        &endpoints("idc", "web", &[&idc[0], &idc[1], &idc[2]], &["web-1"]),
    )
    .unwrap();
    let leaving = addr_of(&idc[0]);
    let serving: BTreeMap<String, bool> = [&idc[1], &idc[2], &tke[0], &tke[1], &api[0]]
        .iter()
        .map(|p| (addr_of(p), false))
        .collect();
    let mut drained = serving.clone();
    drained.insert(leaving.clone(), true);
    eventually("haproxy drains web-1", WAIT, || async {
        let s = haproxy_servers(&h).await?;
        (s == drained).then_some(()).ok_or_else(|| format!("{s:?}"))
    })
    .await;
    eventually("caddy leaves web-1 out", WAIT, || async {
        let s = caddy_servers(&c).await?;
        (s == serving).then_some(()).ok_or_else(|| format!("{s:?}"))
    })
    .await;
    let before = idc[0].hits();
    for (name, lb) in lbs {
        let got = spread(lb, HOST, 60).await;
        assert_eq!(got.values().sum::<usize>(), 60, "{name}: {got:?}");
        assert!(
            got.keys()
                .all(|k| !k.starts_with("HTTP") && !k.starts_with("error")),
            "{name}: {got:?}"
        );
    }
    assert_eq!(idc[0].hits(), before, "a draining pod gets no new requests");

    // Removal: web-1 leaves the slice.
    lab.apply("idc", &endpoints("idc", "web", &[&idc[1], &idc[2]], &[]))
        .unwrap();
    eventually("haproxy removes web-1", WAIT, || async {
        let s = haproxy_servers(&h).await?;
        (s == serving).then_some(()).ok_or_else(|| format!("{s:?}"))
    })
    .await;
    eventually("caddy still without web-1", WAIT, || async {
        let s = caddy_servers(&c).await?;
        (s == serving).then_some(()).ok_or_else(|| format!("{s:?}"))
    })
    .await;
    for (name, lb) in lbs {
        serves_exactly(
            &lab,
            &format!("{name} serves the four remaining pods"),
            lb,
            &[&idc[1], &idc[2], &tke[0], &tke[1]],
        )
        .await;
    }
    assert_eq!(idc[0].hits(), before, "a removed pod gets no requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_lbs_are_resynced_by_drift_detection() {
    require_lbs!();
    let (h_lb, c_lb) = lb_addrs();
    let mut h = haproxy();
    h.launch().await;
    let mut c = Caddy::new(false);
    c.launch().await;
    let lab = Lab::start(LabOptions {
        sync: fast_sync(),
        extra_targets: vec![
            haproxy_target("hap", h_lb, &[&h]),
            caddy_target("cdy", c_lb, &[&c]),
        ],
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let idc = pods::start_many("idc", "web", 44, 1, 2, port)
        .await
        .unwrap();
    let tke = pods::start_many("tke", "web", 45, 1, 1, port)
        .await
        .unwrap();
    apply_app(&lab);
    lab.apply("idc", &endpoints("idc", "web", &[&idc[0]], &[]))
        .unwrap();
    lab.apply("tke", &endpoints("tke", "web", &[&tke[0]], &[]))
        .unwrap();
    for lb in [h_lb, c_lb] {
        serves_exactly(&lab, "both pods served", lb, &[&idc[0], &tke[0]]).await;
    }
    // Scale out: HAProxy gets the new server at run time, so its rendered file (read
    // again at restart) is now stale.
    lab.apply("idc", &endpoints("idc", "web", &[&idc[0], &idc[1]], &[]))
        .unwrap();
    let all = [&idc[0], &idc[1], &tke[0]];
    for lb in [h_lb, c_lb] {
        serves_exactly(&lab, "scaled out", lb, &all).await;
    }
    let h_before = target_state_is(&lab, "rt.sock", "in_sync").await.unwrap();
    let c_before = target_state_is(&lab, &c.admin.to_string(), "in_sync")
        .await
        .unwrap();

    h.kill();
    c.kill();
    h.launch().await;
    c.launch().await;
    // Nothing changes in any cluster: only drift detection can bring them back.
    for lb in [h_lb, c_lb] {
        serves_exactly(&lab, "restored after the restart", lb, &all).await;
    }
    let h_after = target_state_is(&lab, "rt.sock", "in_sync").await.unwrap();
    let c_after = target_state_is(&lab, &c.admin.to_string(), "in_sync")
        .await
        .unwrap();
    assert_ne!(h_before["instance"], h_after["instance"], "{h_after}");
    assert_ne!(c_before["instance"], c_after["instance"], "{c_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one story: kill, report, return, catch up, serve
async fn a_dead_instance_is_reported_and_caught_up_while_its_twin_stays_in_sync() {
    require_lbs!();
    let (h_lb, c_lb) = lb_addrs();
    let mut h = [haproxy(), haproxy()];
    for x in &mut h {
        x.launch().await;
    }
    let mut c = [Caddy::new(false), Caddy::new(false)];
    for x in &mut c {
        x.launch().await;
    }
    let lab = Lab::start(LabOptions {
        sync: fast_sync(),
        extra_targets: vec![
            haproxy_target("hap", h_lb, &[&h[0], &h[1]]),
            caddy_target("cdy", c_lb, &[&c[0], &c[1]]),
        ],
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let idc = pods::start_many("idc", "web", 46, 1, 2, port)
        .await
        .unwrap();
    let tke = pods::start_many("tke", "web", 47, 1, 1, port)
        .await
        .unwrap();
    apply_app(&lab);
    lab.apply("idc", &endpoints("idc", "web", &[&idc[0]], &[]))
        .unwrap();
    lab.apply("tke", &endpoints("tke", "web", &[&tke[0]], &[]))
        .unwrap();
    let first: BTreeSet<String> = [&idc[0], &tke[0]].map(addr_of).into();
    let later: BTreeSet<String> = [&idc[0], &idc[1], &tke[0]].map(addr_of).into();
    let has = |s: BTreeMap<String, bool>, want: &BTreeSet<String>| {
        let got: BTreeSet<String> = s.into_keys().collect();
        (got == *want)
            .then_some(())
            .ok_or_else(|| format!("{got:?}, want {want:?}"))
    };
    for x in &h {
        eventually("each haproxy has both pods", WAIT, || async {
            has(haproxy_servers(x).await?, &first)
        })
        .await;
    }
    for x in &c {
        eventually("each caddy has both pods", WAIT, || async {
            has(caddy_servers(x).await?, &first)
        })
        .await;
    }
    let (h_dead, c_dead) = (
        h[0].path("rt.sock").display().to_string(),
        c[0].admin.to_string(),
    );

    h[0].kill();
    c[0].kill();
    lab.apply("idc", &endpoints("idc", "web", &[&idc[0], &idc[1]], &[]))
        .unwrap();
    // The twins follow at once; only they answer on the shared listen addresses.
    eventually("the live haproxy follows", WAIT, || async {
        has(haproxy_servers(&h[1]).await?, &later)
    })
    .await;
    eventually("the live caddy follows", WAIT, || async {
        has(caddy_servers(&c[1]).await?, &later)
    })
    .await;
    let all = [&idc[0], &idc[1], &tke[0]];
    for lb in [h_lb, c_lb] {
        serves_exactly(&lab, "the live twin serves the new pod", lb, &all).await;
    }
    // The dead ones are reported, the live ones are in sync.
    for suffix in [&h_dead, &c_dead] {
        eventually("the dead instance is failing", WAIT, || async {
            target_state_is(&lab, suffix, "failing").await.map(|_| ())
        })
        .await;
    }
    let h_live = h[1].path("rt.sock").display().to_string();
    for suffix in [&h_live, &c[1].admin.to_string()] {
        target_state_is(&lab, suffix, "in_sync").await.unwrap();
    }

    // Back: caught up without any cluster change.
    h[0].launch().await;
    c[0].launch().await;
    eventually("the returned haproxy catches up", WAIT, || async {
        has(haproxy_servers(&h[0]).await?, &later)
    })
    .await;
    eventually("the returned caddy catches up", WAIT, || async {
        has(caddy_servers(&c[0]).await?, &later)
    })
    .await;
    for suffix in [&h_dead, &c_dead] {
        eventually("the returned instance is in sync", WAIT, || async {
            target_state_is(&lab, suffix, "in_sync").await.map(|_| ())
        })
        .await;
    }
    // And it routes: with its twin gone, only it answers.
    h[1].kill();
    c[1].kill();
    for lb in [h_lb, c_lb] {
        serves_exactly(&lab, "the returned instance serves every pod", lb, &all).await;
    }
}

/// Each controller's listeners on both LBs serve exactly its own pods.
async fn each_serves_its_own(
    (lab_a, a_lbs): (&Lab, [SocketAddr; 2]),
    a_pods: &[&Pod],
    (lab_b, b_lbs): (&Lab, [SocketAddr; 2]),
    b_pods: &[&Pod],
) {
    for lb in a_lbs {
        serves_exactly(lab_a, "A's listener serves A's pods", lb, a_pods).await;
    }
    for lb in b_lbs {
        serves_exactly(lab_b, "B's listener serves B's pods", lb, b_pods).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one story: two owners, a removal, a restart
async fn two_controllers_sharing_one_haproxy_and_one_caddy_keep_to_their_own_members() {
    require_lbs!();
    // Each controller has its own routing listener on each LB.
    let [ha, ca, hb, cb] = [free_addr(), free_addr(), free_addr(), free_addr()];
    let mut h = haproxy();
    h.launch().await;
    let mut c = Caddy::new(false);
    c.launch().await;
    // Controller A pushes as its controller_name, B as `team-b`, into its own HAProxy
    // config directory. Both register the same upstream app/web (worst case).
    let lab_a = Lab::start(LabOptions {
        sync: fast_sync(),
        extra_targets: vec![
            haproxy_target("hap", ha, &[&h]),
            caddy_target("cdy", ca, &[&c]),
        ],
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let lab_b = Lab::start(LabOptions {
        sync: fast_sync(),
        extra_targets: vec![
            Target {
                config_dirs: vec![h.path("podgate-b")],
                ..haproxy_target("hap", hb, &[&h])
            },
            caddy_target("cdy", cb, &[&c]),
        ],
        configure: Some(podgate::demo::Configure::new(|config, _| {
            config.lb_owner = Some("team-b".into());
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let port = pods::free_port().await.unwrap();
    let a = pods::start_many("idc", "web", 48, 1, 2, port)
        .await
        .unwrap();
    let b = pods::start_many("idc", "web", 49, 1, 2, port)
        .await
        .unwrap();
    for (lab, pods) in [(&lab_a, &a), (&lab_b, &b)] {
        apply_app(lab);
        lab.apply("idc", &endpoints("idc", "web", &[&pods[0], &pods[1]], &[]))
            .unwrap();
    }
    let (lab_a_lbs, lab_b_lbs) = ((&lab_a, [ha, ca]), (&lab_b, [hb, cb]));
    each_serves_its_own(lab_a_lbs, &[&a[0], &a[1]], lab_b_lbs, &[&b[0], &b[1]]).await;
    let all: BTreeSet<String> = [&a[0], &a[1], &b[0], &b[1]].map(addr_of).into();
    eventually("HAProxy holds both controllers' pods", WAIT, || async {
        let got: BTreeSet<String> = haproxy_servers(&h).await?.into_keys().collect();
        (got == all).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;

    // B removes a pod: only B's member goes; A's stay (before ownership, B's adapter
    // emptied every `pg_be_` backend it did not know).
    lab_b
        .apply("idc", &endpoints("idc", "web", &[&b[0]], &[]))
        .unwrap();
    each_serves_its_own(lab_a_lbs, &[&a[0], &a[1]], lab_b_lbs, &[&b[0]]).await;
    let left: BTreeSet<String> = [&a[0], &a[1], &b[0]].map(addr_of).into();
    eventually("HAProxy holds A's two and B's one", WAIT, || async {
        let got: BTreeSet<String> = haproxy_servers(&h).await?.into_keys().collect();
        (got == left).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;

    // Restarted LBs: both controllers re-sync everything (the path that re-reads every
    // backend and route) and neither removes the other's members.
    h.kill();
    h.launch().await;
    c.kill();
    c.launch().await;
    each_serves_its_own(lab_a_lbs, &[&a[0], &a[1]], lab_b_lbs, &[&b[0]]).await;
    eventually(
        "HAProxy again holds exactly A's two and B's one",
        WAIT,
        || async {
            let got: BTreeSet<String> = haproxy_servers(&h).await?.into_keys().collect();
            (got == left).then_some(()).ok_or(format!("{got:?}"))
        },
    )
    .await;
    for lab in [&lab_a, &lab_b] {
        for suffix in [h.path("rt.sock").display().to_string(), c.admin.to_string()] {
            eventually("each controller is in sync with each LB", WAIT, || async {
                target_state_is(lab, &suffix, "in_sync").await.map(|_| ())
            })
            .await;
        }
    }
}

/// An HTTPRoute: served by the proxy (a contract version 2 LB); HAProxy and Caddy,
/// which cannot express its rules, leave its host out whole (404, never served by path
/// alone) while they keep serving the Ingress hosts, and the route says so in a
/// Warning Event naming each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_route_is_served_by_the_proxy_and_reported_as_left_out_of_haproxy_and_caddy() {
    require_lbs!();
    // The LB processes and pods must outlive the checks: dropping one stops it.
    let World {
        lab,
        lbs,
        h: _h,
        c: _c,
        idc: _idc,
        tke: _tke,
        api: _api,
    } = world(61).await;
    let sim = lab.sim("idc");
    for obj in [
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": "podgate"},
            "spec": {"controllerName": "podgate.io/gateway-controller"}}),
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"namespace": "app", "name": "edge"},
            "spec": {"gatewayClassName": "podgate",
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"namespace": "app", "name": "gw"},
            "spec": {"parentRefs": [{"name": "edge"}], "hostnames": ["gw.e2e.test"],
                     "rules": [{"matches": [{"method": "GET"}],
                                "backendRefs": [{"name": "api", "port": 80}]}]}}),
    ] {
        sim.apply_json(obj).unwrap();
    }
    let proxy = lab.proxy.http_addr;
    eventually("the proxy serves the route", WAIT, || async move {
        let (status, body) = get(proxy, "gw.e2e.test", "/x").await?;
        (status == 200 && body.trim() == "idc api-1")
            .then_some(())
            .ok_or(format!("{status} {body:?}"))
    })
    .await;
    let events = podgate_sim::Gvr::new("events.k8s.io", "v1", "events");
    for (name, lb) in lbs {
        let (status, _) = get(lb, "gw.e2e.test", "/x").await.unwrap();
        assert_eq!(status, 404, "{name}: the route's host is left out");
        let (status, body) = get(lb, HOST, "/api").await.unwrap();
        assert_eq!(
            (status, body.trim()),
            (200, "idc api-1"),
            "{name} still serves Ingress hosts"
        );
        eventually(&format!("an Event naming {name}"), WAIT, || async {
            let found = sim.list(&events, Some("app")).into_iter().any(|e| {
                e["reason"] == "UnsupportedByLB"
                    && e["regarding"]["name"] == "gw"
                    && e["note"].as_str().is_some_and(|n| {
                        n.contains(if name == "haproxy" { "hap/" } else { "cdy/" })
                    })
            });
            found.then_some(()).ok_or_else(|| {
                let all: Vec<String> = sim
                    .list(&events, Some("app"))
                    .iter()
                    .map(|e| format!("{} {}: {}", e["reason"], e["regarding"]["name"], e["note"]))
                    .collect();
                format!("not yet: {all:?}")
            })
        })
        .await;
    }
    // And the route's status says so, naming both.
    let routes = podgate_sim::Gvr::new("gateway.networking.k8s.io", "v1", "httproutes");
    eventually("the route's status names the LBs", WAIT, || async {
        let route = sim.get(&routes, Some("app"), "gw").ok_or("no route")?;
        let parents = route["status"]["parents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let c = parents
            .iter()
            .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
            .find(|c| c["type"] == "podgate.io/ServedByAllLBs")
            .ok_or_else(|| format!("no condition yet: {parents:?}"))?;
        let note = c["message"].as_str().unwrap_or_default();
        (c["status"] == "False"
            && c["reason"] == "UnsupportedByLB"
            && note.contains("hap/")
            && note.contains("cdy/"))
        .then_some(())
        .ok_or_else(|| format!("{c}"))
    })
    .await;
}
