//! Propagation benchmark for the native LB adapters at 1,000 upstreams: time from
//! `adapter.apply(endpoint change)` to the LB's acknowledgement (apply returned) and to
//! the first request served by the new endpoint, p50/p99, plus the LB's own CPU time
//! per change. Runs real `haproxy` and `caddy` on loopback; skips a missing program.
//!
//! `cargo bench --bench lb_propagation` (env `PG_BENCH_UPSTREAMS`, `PG_BENCH_CHANGES`).

#[path = "../tests/lb_harness/mod.rs"]
mod lb_harness;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lb_harness::{Pod, free_port, table, upstream, vhost, who};
use podgate::lb::LbAdapter;
use podgate::lb::caddy::{AdminAddr, AdminClient, CaddyAdapter, CaddySettings};
use podgate::lb::haproxy::{HaproxyAdapter, HaproxySettings, RuntimeAddr, RuntimeClient};
use podgate::model::{Batch, PathMatch};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in clock ticks (100 Hz on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
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
    child: Child,
    /// HAProxy's runtime API, to find the worker doing the proxying; `None`: the child.
    runtime: Option<RuntimeClient>,
    _dir: tempfile::TempDir,
}

impl Drop for Lb {
    fn drop(&mut self) {
        lb_harness::stop_child(&mut self.child);
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
    let lb: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
    let child = Command::new(lb_harness::find_program("haproxy").expect("haproxy is installed"))
        .args(["-W", "-S"])
        .arg(d.join("master.sock"))
        .arg("-f")
        .arg(d.join("main.cfg"))
        .arg("-f")
        .arg(adapter.settings().config_file())
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
        child,
        runtime: Some(rt),
        _dir: dir,
    }
}

async fn start_caddy() -> Lb {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let lb: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
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
    let adapter = CaddyAdapter::new(
        "bench-caddy".into(),
        CaddySettings::new(AdminAddr::Tcp(admin), vec![lb]),
    )
    .unwrap();
    Lb {
        name: "caddy",
        addr: lb,
        adapter: Box::new(adapter),
        child,
        runtime: None,
        _dir: dir,
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

    let pid = match &lb.runtime {
        Some(rt) => rt.worker_pid().await.unwrap_or(0),
        None => lb.child.id(),
    };
    let cpu_before = cpu_ticks(pid);
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
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
    acks.sort();
    served.sort();
    println!(
        "| {} | {upstreams} | {changes} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.1} |",
        lb.name,
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        pct(&served, 0.5),
        pct(&served, 0.99),
        // clock ticks are 10 ms
        {
            #[allow(clippy::cast_precision_loss)]
            let v = cpu as f64 * 10.0 / changes as f64;
            v
        },
    );
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
    println!(
        "| LB | upstreams | changes | ack p50 | ack p99 | first served p50 | first served p99 | LB CPU ms/change |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    if lb_harness::require_program("haproxy") {
        let lb = start_haproxy().await;
        run(&lb, upstreams, changes, &old, &new).await;
    }
    if lb_harness::require_program("caddy") {
        let lb = start_caddy().await;
        run(&lb, upstreams, changes, &old, &new).await;
    }
}
