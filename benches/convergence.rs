//! End-to-end convergence at scale (issue 4, "Benchmark"): 3 simulated clusters ×
//! 5,000 Services × 10 endpoints (150,000 endpoints, EndpointSlices of 10, 5,000
//! Ingresses), the built-in proxy and the controller as separate processes.
//!
//! Measures the time from controller start to the first complete push, the controller's
//! RSS at that load, and for 1,000 single-endpoint changes (ready → terminating, one
//! EndpointSlice rewritten through the simulated API) the time from the API write to the
//! proxy's admin state containing the change, and the bytes pushed per change. Then,
//! as often, an endpoint *removed* from its slice and the same endpoint *added* back (a
//! new endpoint to the controller), each timed from the write to the proxy's state.
//!
//! The processes are `target/release/podgate` (benches cannot use `CARGO_BIN_EXE_*`):
//!
//! ```sh
//! cargo build --release && cargo bench --bench convergence
//! ```
//!
//! `PODGATE_BIN` overrides the binary; `PG_BENCH_SERVICES` (5000) and `PG_BENCH_CHANGES`
//! (1000) change the size. Everything listens on 127.0.0.1 port 0; endpoint addresses
//! are 10.x.y.z and never receive a connection (nothing sends traffic here). Bytes
//! pushed are counted by a relay in this process between the controller and the
//! proxy's admin API: every byte the controller sends, HTTP headers included.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use podgate_sim::{SimCluster, SimOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTERS: [&str; 3] = ["idc", "tke", "aws"];
const ENDPOINTS: usize = 10;
const NAMESPACE: &str = "apps";
const CONTROLLER: &str = "podgate.io/ingress-controller";
const TOKEN: &str = "bench-token-0123456789abcdef";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn address(cluster: usize, service: usize, endpoint: usize) -> String {
    let n = service * ENDPOINTS + endpoint;
    format!("10.{}.{}.{}", cluster, n / 256, n % 256)
}

/// The EndpointSlice of Service `s` in `cluster`; endpoints in `terminating` are
/// terminating (serving, not ready), `absent` is left out, the others ready.
fn endpoint_slice(
    cluster: usize,
    s: usize,
    terminating: &BTreeSet<usize>,
    absent: Option<usize>,
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let mut b = slice(NAMESPACE, &format!("svc-{s}-abcde"), &format!("svc-{s}")).port("http", 8080);
    for e in (0..ENDPOINTS).filter(|e| Some(*e) != absent) {
        let addr = address(cluster, s, e);
        b = if terminating.contains(&e) {
            b.terminating(&addr)
        } else {
            b.ready(&addr)
        };
        b = b.at(
            &format!("zone-{}", e % 3),
            &format!("node-{}", (s + e) % 500),
        );
    }
    b.build()
}

/// Every cluster runs every Service (namespace sameness merges them into one upstream
/// of 30 endpoints); the 5,000 Ingresses are spread over the clusters.
fn load_cluster(sim: &SimCluster, c: usize, services: usize) -> Result<(), Error> {
    sim.apply(&default_class(ingress_class("podgate", CONTROLLER)))?;
    sim.apply_json(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE }
    }))?;
    let none = BTreeSet::new();
    for s in 0..services {
        let svc = format!("svc-{s}");
        sim.apply(&service(NAMESPACE, &svc).port("http", 80).build())?;
        sim.apply(&endpoint_slice(c, s, &none, None))?;
        if s % CLUSTERS.len() == c {
            let host = format!("app-{s}.example.com");
            sim.apply(
                &ingress(NAMESPACE, &svc)
                    .route(&host, "Prefix", "/", &svc, 80)
                    .route(&host, "Exact", "/healthz", &svc, 80)
                    .build(),
            )?;
        }
    }
    Ok(())
}

/// Forwards connections to `upstream`, counting every byte sent towards it.
async fn relay(upstream: SocketAddr, sent: Arc<AtomicU64>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let sent = sent.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                sent.fetch_add(n as u64, Ordering::Relaxed);
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Ok(addr)
}

/// A minimal blocking HTTP/1.1 client with one keep-alive connection: the measuring
/// loop polls from a plain thread so that it can sleep for less than a millisecond.
struct Admin {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Admin {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        self.try_get(path).or_else(|_| {
            // The connection may have been closed between polls: once more, fresh.
            self.conn = None;
            self.try_get(path)
        })
    }

    fn try_get(&mut self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        write!(
            conn.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.ok_or("no content-length")?];
        conn.read_exact(&mut body)?;
        Ok((status, body))
    }

    /// The values of unlabelled metrics of the proxy (0 when absent).
    fn metrics<const N: usize>(&mut self, names: [&str; N]) -> Result<[u64; N], Error> {
        let (_, body) = self.get("/metrics")?;
        let text = String::from_utf8_lossy(&body);
        Ok(names.map(|name| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0)
        }))
    }
}

/// A child process that is killed (by its own pid) when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `podgate <args>`; its log (stdout) goes to `log`, stderr to `log` + `.err`,
/// and the first log line containing `wanted` is sent back.
fn spawn(
    bin: &Path,
    args: &[&str],
    log: PathBuf,
    wanted: &'static str,
) -> Result<(Proc, std::sync::mpsc::Receiver<String>), Error> {
    let mut child = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("PG_BENCH_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = std::fs::File::create(log).ok();
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(wanted) {
                let _ = tx.send(line.clone());
                sent = true;
            }
            if let Some(f) = out.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    Ok((Proc { child }, rx))
}

/// `key=value` out of a log line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    Some(
        line[start..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

/// VmRSS and VmHWM of `pid`, in kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// utime + stime of `pid` in clock ticks (100 Hz).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PODGATE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("release").join("podgate")
}

/// Whether the endpoint `address` of cluster `cluster` in an upstream's JSON has
/// `state`.
fn has_endpoint(body: &[u8], cluster: &str, address: &str, state: &str) -> bool {
    let Ok(upstream) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    upstream["endpoints"].as_array().is_some_and(|eps| {
        eps.iter()
            .any(|e| e["address"] == address && e["cluster"] == cluster && e["state"] == state)
    })
}

/// `changes` times: one endpoint removed from its EndpointSlice, then added back, each
/// waited for in the proxy's state (issue 12: deregistration must not slow with the
/// cluster's size). Returns the removal and addition latencies and the timeouts.
fn remove_and_add(
    sims: &[SimCluster],
    admin: &mut Admin,
    terminating: &HashMap<(usize, usize), BTreeSet<usize>>,
    services: usize,
    changes: usize,
) -> Result<(Vec<Duration>, Vec<Duration>, usize), Error> {
    let none = BTreeSet::new();
    let (mut removals, mut additions, mut failed) = (Vec::new(), Vec::new(), 0);
    for i in 0..changes {
        let c = i % CLUSTERS.len();
        let s = (i * 7 + 3) % services;
        let e = (i / CLUSTERS.len()) % ENDPOINTS;
        let set = terminating.get(&(c, s)).unwrap_or(&none);
        let want = if set.contains(&e) {
            "draining"
        } else {
            "active"
        };
        let path = format!("/v1/upstreams/{NAMESPACE}/svc-{s}/80");
        let addr = address(c, s, e);
        for (absent, times) in [(Some(e), &mut removals), (None, &mut additions)] {
            let written = Instant::now();
            sims[c].apply(&endpoint_slice(c, s, set, absent))?;
            let seen = wait_for(Duration::from_secs(10), Duration::from_micros(200), || {
                let (status, body) = admin.get(&path)?;
                let present = has_endpoint(&body, CLUSTERS[c], &addr, want);
                Ok(status == 200 && present == absent.is_none())
            })?;
            match seen {
                Some(t) => times.push(t - written),
                None => failed += 1,
            }
        }
    }
    Ok((removals, additions, failed))
}

/// Polls `check` every `every` until it holds or `timeout` passes; the time it held.
fn wait_for(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<bool, Error>,
) -> Result<Option<Instant>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(every);
    }
}

struct Results {
    load: String,
    first_push: Option<Duration>,
    initial_bytes: u64,
    initial_pushes: u64,
    rss_at_load: (u64, u64),
    rss_after: (u64, u64),
    latencies: Vec<Duration>,
    failed: usize,
    /// An endpoint removed from its slice → gone from the proxy's state.
    removals: Vec<Duration>,
    /// The same endpoint added back → in the proxy's state again.
    additions: Vec<Duration>,
    membership_failed: usize,
    bytes: Vec<u64>,
    pushes: u64,
    cpu_ms_per_change: f64,
    load_after: String,
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
fn run() -> Result<Results, Error> {
    let services = env_usize("PG_BENCH_SERVICES", 5_000);
    let changes = env_usize("PG_BENCH_CHANGES", 1_000);
    let pause = Duration::from_millis(env_usize("PG_BENCH_PAUSE_MS", 5) as u64);
    let endpoints_total = services * ENDPOINTS * CLUSTERS.len();
    let bin = binary();
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first (or set PODGATE_BIN)",
            bin.display()
        )
        .into());
    }
    println!("binary: {}", bin.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let dir = tempfile::tempdir()?;
    // `PG_BENCH_KEEP=1`: keep the processes' logs and print when each slow change was
    // written, to line them up with the logs' timestamps.
    let keep = std::env::var_os("PG_BENCH_KEEP").is_some();

    // The world, in three simulated API servers in this process.
    let started = Instant::now();
    let mut sims = Vec::new();
    for (c, name) in CLUSTERS.iter().enumerate() {
        let sim = rt.block_on(SimCluster::start(
            name,
            // Strict: the endpoints are 10.x.y.z, as a real API server wants them.
            SimOptions::default(),
        ))?;
        load_cluster(&sim, c, services)?;
        sim.write_kubeconfig(&dir.path().join(format!("{name}.kubeconfig")))?;
        sims.push(sim);
    }
    println!(
        "world: {} clusters × {services} Services × {ENDPOINTS} endpoints = {endpoints_total} endpoints, {services} Ingresses; built in {:.1} s",
        CLUSTERS.len(),
        started.elapsed().as_secs_f64()
    );

    // The proxy.
    let token_file = dir.path().join("lb.token");
    std::fs::write(&token_file, TOKEN)?;
    let proxy_yaml = dir.path().join("proxy.yaml");
    std::fs::write(
        &proxy_yaml,
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token_file: {}\n",
            token_file.display()
        ),
    )?;
    let proxy_path = proxy_yaml.to_string_lossy().into_owned();
    let (proxy, listening) = spawn(
        &bin,
        &["proxy", "-c", &proxy_path],
        dir.path().join("proxy.log"),
        "proxy listening",
    )?;
    let line = listening
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| {
            let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default();
            format!("the proxy did not start:\n{log}")
        })?;
    let admin_addr: SocketAddr = field(&line, "admin_addr")
        .ok_or("no admin_addr in the proxy's log")?
        .parse()?;
    let sent = Arc::new(AtomicU64::new(0));
    let relay_addr = rt.block_on(relay(admin_addr, sent.clone()))?;
    let mut admin = Admin::new(admin_addr);
    let (_, metrics) = admin.get("/metrics")?;
    if !String::from_utf8_lossy(&metrics).contains("podgate_proxy_endpoints") {
        return Err(format!(
            "{} has no podgate_proxy_endpoints metric: an older build (a shared target directory?); rebuild it or set PODGATE_BIN",
            bin.display()
        )
        .into());
    }

    // The controller.
    let mut clusters = String::new();
    for name in CLUSTERS {
        let kc = dir.path().join(format!("{name}.kubeconfig"));
        writeln!(
            clusters,
            "  - name: {name}\n    kubeconfig: {}",
            kc.display()
        )?;
    }
    let yaml = format!(
        "controller_name: {CONTROLLER}\npublish_addresses: [127.0.0.1]\nclusters:\n{clusters}targets:\n  - name: lb1\n    kind: podgate\n    url: http://{relay_addr}\n    token_file: {}\nadmin:\n  listen: 127.0.0.1:0\n",
        token_file.display()
    );
    let controller_yaml = dir.path().join("podgate.yaml");
    std::fs::write(&controller_yaml, yaml)?;
    let controller_path = controller_yaml.to_string_lossy().into_owned();
    let load = load_average();
    let t0 = Instant::now();
    let (controller, started) = spawn(
        &bin,
        &["controller", "-c", &controller_path],
        dir.path().join("controller.log"),
        "controller started",
    )?;
    let pid = controller.pid();
    let want = [endpoints_total as u64, services as u64, services as u64];
    // `PG_BENCH_RSS_TRACE=1`: print the controller's RSS and the proxy's state every
    // 50 ms until the first complete push (where the start-up memory goes).
    let trace = std::env::var_os("PG_BENCH_RSS_TRACE").is_some();
    let mut polls = 0u64;
    let mut last_live = [0; 4];
    let complete = wait_for(Duration::from_mins(2), Duration::from_millis(5), || {
        let live = admin.metrics([
            "podgate_proxy_endpoints",
            "podgate_proxy_upstreams",
            "podgate_proxy_hosts",
            "podgate_proxy_generation",
        ])?;
        polls += 1;
        if trace && polls.is_multiple_of(10) {
            let (rss, hwm) = memory(pid);
            println!(
                "  {:>6.0} ms  RSS {:>6.1} MB  HWM {:>6.1} MB  pushes {}  endpoints {}  sent {:.1} MB",
                t0.elapsed().as_secs_f64() * 1000.0,
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                live[3],
                live[0],
                sent.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
        last_live = live;
        Ok(live[..3] == want)
    })?;
    let first_push = complete.map(|t| t - t0);
    let startup_cpu_ms = cpu_ticks(pid) * 10;
    let initial_bytes = sent.load(Ordering::Relaxed);
    let initial_pushes = admin.metrics(["podgate_proxy_generation"])?[0];
    println!(
        "first complete push: {} after controller start ({initial_pushes} pushes, {initial_bytes} bytes; controller CPU so far {startup_cpu_ms} ms)",
        first_push.map_or_else(|| "never (timeout 120 s)".into(), ms)
    );
    if first_push.is_none() {
        return Err(format!(
            "no complete push (last seen: endpoints, upstreams, hosts, generation = {last_live:?}); logs in {}",
            dir.keep().display()
        )
        .into());
    }

    // Check the content once: every endpoint of every upstream, ready.
    let (status, body) = admin.get("/v1/state")?;
    let state: podgate_core::model::LbState = serde_json::from_slice(&body)?;
    let active = state
        .upstreams
        .iter()
        .flat_map(|u| &u.endpoints)
        .filter(|e| e.state == podgate_core::model::EndpointState::Active)
        .count();
    if status != 200 || active != endpoints_total {
        return Err(format!("proxy state: {status}, {active} active endpoints").into());
    }
    drop(state);

    // Let the start-up settle (Ingress status writes, their watch events) before
    // reading the resident set at load.
    let mut last = sent.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < settle_deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let rss_at_load = memory(pid);

    // The changes: one endpoint of one EndpointSlice flips ready → terminating (or
    // back, if it already flipped), written through the simulated API.
    let pushes_before = admin.metrics(["podgate_proxy_generation"])?[0];
    let cpu_before = cpu_ticks(pid);
    let mut terminating: HashMap<(usize, usize), BTreeSet<usize>> = HashMap::new();
    let mut latencies = Vec::with_capacity(changes);
    let mut bytes = Vec::with_capacity(changes);
    let mut failed = 0;
    let mut window_start = sent.load(Ordering::Relaxed);
    for i in 0..changes {
        let c = i % CLUSTERS.len();
        let s = (i * 5 + i * 5 / services) % services;
        let e = i % ENDPOINTS;
        let set = terminating.entry((c, s)).or_default();
        let draining = !set.remove(&e);
        if draining {
            set.insert(e);
        }
        let obj = endpoint_slice(c, s, set, None);
        let path = format!("/v1/upstreams/{NAMESPACE}/svc-{s}/80");
        let want = if draining { "draining" } else { "active" };
        let addr = address(c, s, e);
        let written = Instant::now();
        let written_wall = jiff::Timestamp::now();
        sims[c].apply(&obj)?;
        let seen = wait_for(Duration::from_secs(10), Duration::from_micros(200), || {
            let (status, body) = admin.get(&path)?;
            Ok(status == 200 && has_endpoint(&body, CLUSTERS[c], &addr, want))
        })?;
        match seen {
            Some(t) => {
                if keep && t - written > Duration::from_millis(10) {
                    println!(
                        "  slow change #{i}: {} svc-{s} {addr}, written {written_wall}, seen after {}",
                        CLUSTERS[c],
                        ms(t - written)
                    );
                }
                latencies.push(t - written);
            }
            None => failed += 1,
        }
        // A short pause so that each change is pushed alone, then the bytes the
        // controller sent since the previous change's write.
        std::thread::sleep(pause);
        let now = sent.load(Ordering::Relaxed);
        bytes.push(now - window_start);
        window_start = now;
    }
    #[allow(clippy::cast_precision_loss)]
    let cpu_ms_per_change = (cpu_ticks(pid) - cpu_before) as f64 * 10.0 / changes.max(1) as f64;
    let pushes = admin.metrics(["podgate_proxy_generation"])?[0] - pushes_before;
    if keep {
        // The controller's own view: from receiving the watch event to the LB's ack.
        let line = started
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        if let Some(addr) = field(&line, "admin_addr").and_then(|a| a.parse().ok()) {
            let (_, body) = Admin::new(addr).get("/metrics")?;
            for l in String::from_utf8_lossy(&body).lines() {
                if l.contains("convergence") && !l.starts_with('#') {
                    println!("  controller: {l}");
                }
            }
        }
    }
    let (removals, additions, membership_failed) =
        remove_and_add(&sims, &mut admin, &terminating, services, changes)?;
    let rss_after = memory(pid);
    let load_after = load_average();
    // A controller restart against a proxy that holds everything: the new controller
    // lists, reads the proxy's upstreams (without endpoints) and sends the full sync
    // again, in as many parts as the first start.
    drop(controller);
    let generation = admin.metrics(["podgate_proxy_generation"])?[0];
    let t_restart = Instant::now();
    let (controller, _started) = spawn(
        &bin,
        &["controller", "-c", &controller_path],
        dir.path().join("controller-restarted.log"),
        "controller started",
    )?;
    let resynced = wait_for(Duration::from_mins(2), Duration::from_millis(5), || {
        Ok(admin.metrics(["podgate_proxy_generation"])?[0] >= generation + initial_pushes)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let (rss, hwm) = memory(controller.pid());
    println!(
        "restarted controller: full sync again after {}; RSS {:.1} MB, peak {:.1} MB",
        resynced.map_or_else(|| "never (timeout 120 s)".into(), |t| ms(t - t_restart)),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(controller);
    drop(proxy);
    drop(sims);
    if keep {
        println!("logs kept in {}", dir.keep().display());
    }
    Ok(Results {
        load,
        first_push,
        initial_bytes,
        initial_pushes,
        rss_at_load,
        rss_after,
        latencies,
        failed,
        removals,
        additions,
        membership_failed,
        bytes,
        pushes,
        cpu_ms_per_change,
        load_after,
    })
}

#[allow(clippy::cast_precision_loss)]
fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let r = match run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("convergence bench failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lat = r.latencies.clone();
    lat.sort();
    let mut bytes = r.bytes.clone();
    bytes.sort_unstable();
    let n = lat.len();
    let b = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((bytes.len().saturating_sub(1)) as f64 * p).round() as usize;
        bytes.get(i).copied().unwrap_or(0)
    };
    println!();
    println!(
        "load average at controller start: {}; after the changes: {}",
        r.load, r.load_after
    );
    println!("| measure | target | result |");
    println!("|---|---|---|");
    println!(
        "| controller start → first complete push ({} pushes, {:.1} MB) | ≤ 2 s | {} |",
        r.initial_pushes,
        r.initial_bytes as f64 / 1e6,
        r.first_push.map_or_else(|| "-".into(), ms)
    );
    println!(
        "| controller RSS at load (VmRSS / VmHWM) | ≤ 100 MB | {:.1} MB / {:.1} MB |",
        r.rss_at_load.0 as f64 / 1024.0,
        r.rss_at_load.1 as f64 / 1024.0
    );
    println!(
        "| change → proxy state, p50 ({n} changes, {} timed out) | ≤ 10 ms | {} |",
        r.failed,
        ms(pct(&lat, 0.5))
    );
    println!(
        "| change → proxy state, p99 | ≤ 50 ms | {} |",
        ms(pct(&lat, 0.99))
    );
    println!("| change → proxy state, max | | {} |", ms(pct(&lat, 1.0)));
    for (what, times) in [
        ("endpoint removed from its slice", &r.removals),
        ("endpoint added to its slice", &r.additions),
    ] {
        let mut sorted = times.clone();
        sorted.sort();
        println!(
            "| {what} → proxy state, p50 / p99 / max ({} changes) | ≤ 5 ms / ≤ 25 ms | {} / {} / {} |",
            sorted.len(),
            ms(pct(&sorted, 0.5)),
            ms(pct(&sorted, 0.99)),
            ms(pct(&sorted, 1.0))
        );
    }
    println!(
        "| bytes pushed per change, p50 / max (HTTP headers included) | ≤ 2 KB | {} B / {} B |",
        b(0.5),
        b(1.0)
    );
    println!(
        "| pushes per change | | {:.2} |",
        r.pushes as f64 / r.bytes.len().max(1) as f64
    );
    println!(
        "| controller CPU per change | | {:.2} ms |",
        r.cpu_ms_per_change
    );
    println!(
        "| controller RSS after the changes (VmRSS / VmHWM) | | {:.1} MB / {:.1} MB |",
        r.rss_after.0 as f64 / 1024.0,
        r.rss_after.1 as f64 / 1024.0
    );
    let slow: Vec<String> = r
        .latencies
        .iter()
        .enumerate()
        .filter(|(_, d)| **d > Duration::from_millis(10))
        .map(|(i, d)| format!("#{i} {:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "\nchanges slower than 10 ms: {} ({})",
        slow.len(),
        slow.join(", ")
    );
    if r.membership_failed > 0 {
        println!("removals or additions timed out: {}", r.membership_failed);
    }
    if r.failed > 0 || r.membership_failed > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
