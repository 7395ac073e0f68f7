//! A `podgate proxy` process driven by a Lab's controller, a load client counting what
//! it sees, and the reads of its state: what the process tests share.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use podgate::demo::pods::Pod;
use podgate::demo::{Lab, LabOptions};
use podgate::lb::config::{Target, TargetKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const HOST: &str = "app.example.com";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A running `podgate proxy` process and where it listens.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// Its log lines (JSON) after "proxy listening", and those of processes it started.
    pub(crate) logs: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

/// Starts `podgate proxy` with `state_file` on `http`/`admin` (port 0: any) and waits
/// for its "proxy listening" line.
pub(crate) async fn spawn(dir: &Path, http: SocketAddr, admin: SocketAddr) -> Process {
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {http}\nstate_file: {}\nadmin:\n  listen: {admin}\n  token_file: {}\n",
            dir.join("state.json").display(),
            dir.join("lb.token").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podgate"))
        .args(["proxy", "--workers", "1", "-c"])
        .arg(&config)
        .env("PODGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "proxy listening" {
                return v["fields"].clone();
            }
        }
        panic!("the proxy exited before listening");
    })
    .await
    .expect("the proxy says where it listens");
    // Keep reading, so a full pipe never blocks the proxy's logging.
    let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_default());
        }
    });
    let addr = |field: &str| listening[field].as_str().unwrap().parse().unwrap();
    Process {
        child,
        http: addr("http_addr"),
        admin: addr("admin_addr"),
        logs,
    }
}

/// Answers seen by the load client.
#[derive(Default)]
pub(crate) struct Load {
    pub(crate) ok: AtomicU64,
    pub(crate) not_found: AtomicU64,
    pub(crate) other: AtomicU64,
    /// Connection refused or reset: the process was down.
    pub(crate) unreachable: AtomicU64,
    pub(crate) stop: AtomicBool,
    /// The first few errors, for the failure message.
    pub(crate) errors: std::sync::Mutex<Vec<String>>,
}

/// Sends requests for `HOST` to `addr` one after another until `load.stop`, over one
/// keep-alive connection.
pub(crate) fn load(addr: SocketAddr, load: Arc<Load>) -> tokio::task::JoinHandle<()> {
    load_with(addr, load, true)
}

/// [`load`]; with `keep_alive` false, every request on a new connection.
pub(crate) fn load_with(
    addr: SocketAddr,
    load: Arc<Load>,
    keep_alive: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(2));
        if !keep_alive {
            client = client.pool_max_idle_per_host(0);
        }
        let client = client.build().unwrap();
        while !load.stop.load(Ordering::Relaxed) {
            let answer = client
                .get(format!("http://{addr}/"))
                .header("host", HOST)
                .send()
                .await;
            let counter = match answer.map(|a| a.status().as_u16()) {
                Ok(200) => &load.ok,
                Ok(404) => &load.not_found,
                Ok(_) => &load.other,
                Err(e) => {
                    if let Ok(mut errors) = load.errors.lock()
                        && errors.len() < 5
                    {
                        errors.push(format!("{e:?}"));
                    }
                    // Refused while the process is down: let the rest of the test run.
                    tokio::task::yield_now().await;
                    &load.unreachable
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// The endpoint addresses of the app's upstream in the LB at `admin`, sorted.
pub(crate) async fn endpoints(admin: SocketAddr, token: &str) -> Option<Vec<String>> {
    let state: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{admin}/v1/state"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut out: Vec<String> = state["upstreams"]
        .as_array()?
        .iter()
        .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["address"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    Some(out)
}

/// The sorted addresses of `pods`.
pub(crate) fn ips<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let mut ips: Vec<String> = pods.into_iter().map(Pod::ip).collect();
    ips.sort();
    ips
}

pub(crate) const TOKEN: &str = "process-token";

/// A Lab whose controller also drives a `podgate proxy` process (target `process`),
/// the app deployed with two pods per cluster, held by the process and in its file.
pub(crate) async fn lab_with_process(dir: &Path) -> (Lab, Process, Vec<Pod>, Vec<Pod>) {
    std::fs::write(dir.join("lb.token"), TOKEN).unwrap();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let proxy = spawn(dir, any, any).await;
    let lab = Lab::start(LabOptions {
        extra_targets: vec![Target {
            url: Some(format!("http://{}", proxy.admin)),
            token_file: Some(dir.join("lb.token")),
            ..Target::new("process", TargetKind::Podgate)
        }],
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let (idc, tke) = lab.deploy_pods("app", HOST, 70, 2).await.unwrap();
    let all = ips(idc.iter().chain(&tke));
    lab.eventually("the process serves every pod", WAIT, || async {
        (endpoints(proxy.admin, TOKEN).await? == all).then_some(())
    })
    .await
    .unwrap();
    lab.eventually("the state file holds them", WAIT, || async {
        let saved = std::fs::read_to_string(dir.join("state.json")).ok()?;
        all.iter()
            .all(|ip| saved.contains(ip.as_str()))
            .then_some(())
    })
    .await
    .unwrap();
    (lab, proxy, idc, tke)
}

/// One more idc pod for the app of [`lab_with_process`], as a scale-out writes it; every
/// pod address now, sorted.
pub(crate) async fn scale_out_idc(lab: &Lab, idc: &mut Vec<Pod>, tke: &[Pod]) -> Vec<String> {
    let port = idc[0].addr.port();
    idc.extend(
        podgate::demo::pods::start_many("idc", "web", 70, 3, 1, port)
            .await
            .unwrap(),
    );
    lab.apply(
        "idc",
        &podgate::demo::pods::slice_of("app", "web-idc", "web", idc, &[]),
    )
    .unwrap();
    ips(idc.iter().chain(tke))
}

/// The controller's status of the `process` target.
pub(crate) async fn target(lab: &Lab) -> Option<serde_json::Value> {
    let state = lab.admin_state().await.ok()?;
    state["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.starts_with("process")))
        .cloned()
}

pub(crate) async fn summary_instance(admin: SocketAddr, token: &str) -> String {
    let summary: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{admin}/v1/summary"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    summary["instance"].as_str().unwrap().to_owned()
}

pub(crate) fn token_of(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.path().join("lb.token"))
        .unwrap()
        .trim()
        .to_owned()
}
