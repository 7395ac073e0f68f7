//! Propagation benchmark for every LB kind at 1,000 upstreams, side by side, in two
//! parts, each printing one table:
//!
//! 1. End to end: an EndpointSlice written to the simulated API server → the watcher →
//!    Index → one sync worker per LB → the LB. For each change: time from the API write
//!    to the LB's acknowledgement (the adapter's push returned) and to the first request
//!    served by the new endpoint, p50/p99, and the LB's own CPU per change. All three
//!    LBs are driven by one controller, so every change reaches them at the same time.
//! 2. The adapter alone: from `adapter.apply(endpoint change)` on, the LB's own cost.
//!
//! The built-in proxy runs in this process on a thread of its own (its CPU is that
//! thread's) behind the HTTP adapter; real `haproxy` and `caddy` run on loopback; a
//! missing program is skipped.
//!
//! `cargo bench --bench lb_propagation` (env `PG_BENCH_UPSTREAMS`, `PG_BENCH_CHANGES`).

// The LB tests' harness; this bench uses only part of it.
#[path = "../tests/lb/harness.rs"]
#[allow(dead_code)]
mod lb_harness;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lb_harness::{Pod, free_addr, table, upstream, vhost, who};
use podgate::demo::{Lab, LabOptions};
use podgate::lb::caddy::{AdminAddr, AdminClient, CaddyAdapter, CaddySettings};
use podgate::lb::config::{Target, TargetKind};
use podgate::lb::haproxy::{HaproxyAdapter, HaproxySettings, RuntimeAddr, RuntimeClient};
use podgate::lb::{HttpLb, HttpLbConfig, LbAdapter};
use podgate_core::model::{Batch, PathMatch};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process or thread (`/proc/…/stat`), in clock ticks (100 Hz on
/// Linux).
fn cpu_ticks(stat_file: &std::path::Path) -> u64 {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// CPU time in nanoseconds of whatever `stat_file` names: a thread's `schedstat`
/// (nanosecond resolution) when the file is one, else a `stat` file's utime + stime
/// (10 ms ticks; for a process this covers all of its threads).
fn cpu_ns(stat_file: &std::path::Path) -> u64 {
    if stat_file.ends_with("schedstat") {
        let raw = std::fs::read_to_string(stat_file).unwrap_or_default();
        return raw
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    cpu_ticks(stat_file) * 10_000_000
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Lb {
    name: &'static str,
    addr: SocketAddr,
    adapter: Box<dyn LbAdapter>,
    /// The LB process; `None` for the in-process built-in proxy.
    child: Option<Child>,
    /// HAProxy's runtime API, to find the worker doing the proxying; `None`: the child.
    runtime: Option<RuntimeClient>,
    /// The built-in proxy's thread (`/proc/<pid>/task/<tid>/schedstat`).
    thread_stat: Option<std::path::PathBuf>,
    /// How a controller reaches this LB (for the end-to-end part); its routing
    /// listener is `ctl_addr`, beside the adapter part's `addr`.
    target: Target,
    ctl_addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Lb {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            lb_harness::stop_child(c);
        }
    }
}

impl Lb {
    /// Where the CPU time of whatever does the proxying is read.
    async fn stat_file(&self) -> std::path::PathBuf {
        if let Some(t) = &self.thread_stat {
            return t.clone();
        }
        let pid = match (&self.runtime, &self.child) {
            (Some(rt), _) => rt.worker_pid().await.unwrap_or(0),
            (None, Some(c)) => c.id(),
            (None, None) => 0,
        };
        format!("/proc/{pid}/stat").into()
    }
}

/// The built-in proxy on a current-thread runtime of its own OS thread, so that all of
/// its work (listeners, admin API, forwarding) is that thread's CPU time.
fn start_proxy() -> Lb {
    let token = format!("{:032x}", rand::random::<u128>());
    let (tx, rx) = std::sync::mpsc::channel();
    let t = token.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let proxy = podgate::proxy::start(podgate::proxy::ProxyConfig::new(any, any, &t))
                .await
                .unwrap();
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let stat = std::path::Path::new("/proc").join(me).join("schedstat");
            tx.send((proxy.http_addr, proxy.admin_url(), stat)).unwrap();
            std::future::pending::<()>().await;
            drop(proxy);
        });
    });
    let (addr, admin_url, stat) = rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let target = Target {
        url: Some(admin_url.clone()),
        token_file: Some(token_file),
        ..Target::new("podgate-proxy", TargetKind::Podgate)
    };
    let adapter = HttpLb::new(
        "bench-proxy",
        HttpLbConfig {
            base_url: admin_url,
            token,
            timeout: Duration::from_secs(30),
            tls: None,
        },
    )
    .unwrap();
    Lb {
        name: "podgate proxy",
        addr,
        adapter: Box::new(adapter),
        child: None,
        runtime: None,
        thread_stat: Some(stat),
        target,
        ctl_addr: addr,
        _dir: Some(dir),
    }
}

async fn wait_until<F: AsyncFnMut() -> bool>(mut ok: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok().await {
        assert!(Instant::now() < deadline, "LB did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_haproxy() -> Lb {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let lb: SocketAddr = free_addr();
    std::fs::write(
        d.join("main.cfg"),
        format!(
            "global\n    stats socket {}/rt.sock level admin\n",
            d.display()
        ),
    )
    .unwrap();
    let mut s = HaproxySettings::new(
        RuntimeAddr::Unix(d.join("rt.sock")),
        Some(RuntimeAddr::Unix(d.join("master.sock"))),
        d.join("podgate"),
    );
    s.binds = vec![lb];
    s.reload_timeout = Duration::from_mins(1);
    let adapter = HaproxyAdapter::new("bench-haproxy".into(), s).unwrap();
    adapter.bootstrap().await.unwrap();
    // The controller's files (end-to-end part) live beside the adapter's.
    std::fs::create_dir_all(d.join("controller")).unwrap();
    std::fs::write(d.join("controller/podgate.cfg"), "").unwrap();
    let ctl_addr: SocketAddr = free_addr();
    let target = Target {
        socket: Some(d.join("rt.sock").display().to_string()),
        master_socket: Some(d.join("master.sock").display().to_string()),
        config_dir: Some(d.join("controller")),
        listen: vec![ctl_addr],
        ..Target::new("haproxy", TargetKind::Haproxy)
    };
    let child = Command::new(lb_harness::find_program("haproxy").expect("haproxy is installed"))
        .args(["-W", "-S"])
        .arg(d.join("master.sock"))
        .arg("-f")
        .arg(d.join("main.cfg"))
        .arg("-f")
        .arg(adapter.settings().config_file())
        .arg("-f")
        .arg(d.join("controller/podgate.cfg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = RuntimeClient::new(RuntimeAddr::Unix(d.join("rt.sock")), Duration::from_secs(5));
    wait_until(async || rt.worker_pid().await.is_ok()).await;
    Lb {
        name: "haproxy",
        addr: lb,
        adapter: Box::new(adapter),
        child: Some(child),
        runtime: Some(rt),
        thread_stat: None,
        target,
        ctl_addr,
        _dir: Some(dir),
    }
}

async fn start_caddy() -> Lb {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let admin: SocketAddr = free_addr();
    let lb: SocketAddr = free_addr();
    std::fs::write(
        d.join("caddy.json"),
        format!(r#"{{"admin":{{"listen":"{admin}","config":{{"persist":false}}}},"logging":{{"logs":{{"default":{{"level":"ERROR"}}}}}}}}"#),
    )
    .unwrap();
    let child = Command::new(lb_harness::find_program("caddy").expect("caddy is installed"))
        .args(["run", "--config"])
        .arg(d.join("caddy.json"))
        .env("HOME", &d)
        .env("XDG_DATA_HOME", d.join("data"))
        .env("XDG_CONFIG_HOME", d.join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = AdminClient::new(AdminAddr::Tcp(admin), Duration::from_secs(5));
    wait_until(async || client.request("GET", "/config/", None).await.is_ok()).await;
    let ctl_addr: SocketAddr = free_addr();
    let target = Target {
        url: Some(format!("http://{admin}")),
        listen: vec![ctl_addr],
        ..Target::new("caddy", TargetKind::Caddy)
    };
    let adapter = CaddyAdapter::new(
        "bench-caddy".into(),
        CaddySettings::new(AdminAddr::Tcp(admin), vec![lb]),
    )
    .unwrap();
    Lb {
        name: "caddy",
        addr: lb,
        adapter: Box::new(adapter),
        child: Some(child),
        runtime: None,
        thread_stat: None,
        target,
        ctl_addr,
        _dir: Some(dir),
    }
}

async fn run(lb: &Lb, upstreams: usize, changes: usize, old: &Pod, new: &[Pod]) {
    let svc = |i: usize| format!("svc-{i}");
    let hosts: Vec<String> = (0..upstreams)
        .map(|i| format!("{}.bench", svc(i)))
        .collect();
    let names: Vec<String> = (0..upstreams).map(svc).collect();
    let routes = table(
        hosts
            .iter()
            .zip(&names)
            .map(|(h, n)| (h.as_str(), vhost(&[(PathMatch::prefix("/"), n)], None)))
            .collect(),
        None,
    );
    let t = Instant::now();
    lb.adapter
        .apply(&Batch {
            epoch: 1,
            upsert_upstreams: names
                .iter()
                .map(|n| upstream(n, vec![old.active(1)]))
                .collect(),
            routes: Some(routes),
            ..Batch::default()
        })
        .await
        .unwrap();
    println!(
        "{}: initial full sync of {upstreams} upstreams: {:?}",
        lb.name,
        t.elapsed()
    );
    assert_eq!(who(lb.addr, &hosts[0], "/").await, old.name);

    let stat = lb.stat_file().await;
    let cpu_before = cpu_ns(&stat);
    let (mut acks, mut served) = (Vec::new(), Vec::new());
    for k in 0..changes {
        let i = (k * 7919) % upstreams;
        let pod = &new[k % new.len()];
        let batch = Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(&names[i], vec![pod.active(1)])],
            ..Batch::default()
        };
        let t = Instant::now();
        lb.adapter.apply(&batch).await.unwrap();
        acks.push(t.elapsed());
        while who(lb.addr, &hosts[i], "/").await != pod.name {
            assert!(t.elapsed() < Duration::from_secs(30), "change never served");
        }
        served.push(t.elapsed());
    }
    let cpu = cpu_ns(&stat).saturating_sub(cpu_before);
    acks.sort();
    served.sort();
    println!(
        "| {} | {upstreams} | {changes} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.3} |",
        lb.name,
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        pct(&served, 0.5),
        pct(&served, 0.99),
        {
            #[allow(clippy::cast_precision_loss)]
            let v = cpu as f64 / 1e6 / changes as f64;
            v
        },
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The end-to-end part: one controller (a `Lab`: simulated cluster `idc`, watcher,
/// Index, sync) drives every LB in `lbs`; each change is an EndpointSlice write.
#[allow(clippy::too_many_lines)] // one measurement, start to end
async fn run_from_sim(lbs: &[Lb], upstreams: usize, changes: usize, old: &Pod, new: &[Pod]) {
    let t_start = Instant::now();
    let lab = Lab::start(LabOptions {
        extra_targets: lbs.iter().map(|lb| lb.target.clone()).collect(),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let ns = "bench";
    lab.sim("idc")
        .apply_json(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .unwrap();
    lab.apply(
        "idc",
        &default_class(ingress_class("podgate", &lab.config.controller_name)),
    )
    .unwrap();
    let svc = |i: usize| format!("svc-{i}");
    let host = |i: usize| format!("{}.bench", svc(i));
    let slice_of = |i: usize, pod: &Pod| {
        slice(ns, &svc(i), &svc(i))
            .port("http", pod.addr.port())
            .ready(&pod.addr.ip().to_string())
            .build()
    };
    let mut rules = ingress(ns, "all");
    for i in 0..upstreams {
        lab.apply("idc", &service(ns, &svc(i)).port("http", 80).build())
            .unwrap();
        lab.apply("idc", &slice_of(i, old)).unwrap();
        rules = rules.route(&host(i), "Prefix", "/", &svc(i), 80);
    }
    lab.apply("idc", &rules.build()).unwrap();
    for lb in lbs {
        let deadline = Instant::now() + Duration::from_mins(2);
        for i in [0, upstreams - 1] {
            while who(lb.ctl_addr, &host(i), "/").await != old.name {
                assert!(
                    Instant::now() < deadline,
                    "{}: initial state never served",
                    lb.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    println!(
        "end to end: controller start to {upstreams} upstreams served by every LB: {:?}",
        t_start.elapsed()
    );

    let status_of = |lb: &Lb| {
        let prefix = format!("{}/", lb.target.name);
        lab.controller
            .admin
            .targets
            .iter()
            .find(|t| t.lock().name.starts_with(&prefix))
            .cloned()
            .expect("the controller has a worker for every LB")
    };
    let statuses: Vec<_> = lbs.iter().map(status_of).collect();
    let mut stats = Vec::new();
    for lb in lbs {
        stats.push(lb.stat_file().await);
    }
    let cpu_before: Vec<u64> = stats.iter().map(|s| cpu_ns(s)).collect();
    let pushes_before: Vec<u64> = statuses.iter().map(|s| s.lock().pushes).collect();
    let mut acks = vec![Vec::new(); lbs.len()];
    let mut served = vec![Vec::new(); lbs.len()];
    for k in 0..changes {
        let i = (k * 7919) % upstreams;
        let pod = &new[k % new.len()];
        let pushes: Vec<u64> = statuses.iter().map(|s| s.lock().pushes).collect();
        let t0 = Instant::now();
        lab.apply("idc", &slice_of(i, pod)).unwrap();
        // Every LB is polled at once: the change reaches them together.
        let waits = lbs.iter().map(|lb| async move {
            while who(lb.ctl_addr, &host(i), "/").await != pod.name {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "{}: change never served",
                    lb.name
                );
            }
            t0.elapsed()
        });
        let times = futures::future::join_all(waits).await;
        for (j, t) in times.into_iter().enumerate() {
            served[j].push(t);
            // An LB may serve the change before its acknowledgement reaches podgate
            // (Caddy answers a config load only after retiring the old config).
            loop {
                let status = statuses[j].lock().clone();
                if status.pushes > pushes[j] {
                    acks[j].push(status.last_ack.expect("acknowledged") - t0);
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "{}: never acknowledged",
                    lbs[j].name
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    println!(
        "| LB | upstreams | changes | pushes | API write → ack p50 | p99 | API write → first served p50 | p99 | LB CPU ms/change |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (j, lb) in lbs.iter().enumerate() {
        acks[j].sort();
        served[j].sort();
        #[allow(clippy::cast_precision_loss)]
        let cpu = cpu_ns(&stats[j]).saturating_sub(cpu_before[j]) as f64 / 1e6 / changes as f64;
        println!(
            "| {} | {upstreams} | {changes} | {} | {} | {} | {} | {} | {cpu:.3} |",
            lb.name,
            statuses[j].lock().pushes - pushes_before[j],
            ms(pct(&acks[j], 0.5)),
            ms(pct(&acks[j], 0.99)),
            ms(pct(&served[j], 0.5)),
            ms(pct(&served[j], 0.99)),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let upstreams = env_usize("PG_BENCH_UPSTREAMS", 1000);
    let changes = env_usize("PG_BENCH_CHANGES", 100);
    let old = Pod::start("old", "127.1.200.1").await;
    let mut new = Vec::new();
    for i in 0..4 {
        new.push(Pod::start(&format!("new{i}"), &format!("127.1.201.{}", i + 1)).await);
    }
    {
        let mut lbs = vec![start_proxy()];
        if lb_harness::require_program("haproxy") {
            lbs.push(start_haproxy().await);
        }
        if lb_harness::require_program("caddy") {
            lbs.push(start_caddy().await);
        }
        run_from_sim(&lbs, upstreams, changes, &old, &new).await;
    }
    println!("\nThe adapter alone (from `adapter.apply`):");
    println!(
        "| LB | upstreams | changes | ack p50 | ack p99 | first served p50 | first served p99 | LB CPU ms/change |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    {
        let lb = start_proxy();
        run(&lb, upstreams, changes, &old, &new).await;
    }
    if lb_harness::require_program("haproxy") {
        let lb = start_haproxy().await;
        run(&lb, upstreams, changes, &old, &new).await;
    }
    if lb_harness::require_program("caddy") {
        let lb = start_caddy().await;
        run(&lb, upstreams, changes, &old, &new).await;
    }
}
