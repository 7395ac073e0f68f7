//! `podgate proxy` as a real process, killed with SIGKILL under load and started again:
//! it serves its last state from its state file at once (not one 404), and the
//! controller notices the new instance and resyncs what changed meanwhile within 1 s.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use podgate::demo::pods::{self, Pod};
use podgate::demo::{Lab, LabOptions};
use podgate::lb::config::{Target, TargetKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const HOST: &str = "app.example.com";
const WAIT: Duration = Duration::from_secs(20);

/// A running `podgate proxy` process and where it listens.
struct Process {
    child: Child,
    http: SocketAddr,
    admin: SocketAddr,
}

/// Starts `podgate proxy` with `state_file` on `http`/`admin` (port 0: any) and waits
/// for its "proxy listening" line.
async fn spawn(dir: &Path, http: SocketAddr, admin: SocketAddr) -> Process {
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = |field: &str| listening[field].as_str().unwrap().parse().unwrap();
    Process {
        child,
        http: addr("http_addr"),
        admin: addr("admin_addr"),
    }
}

/// Answers seen by the load client.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    not_found: AtomicU64,
    other: AtomicU64,
    /// Connection refused or reset: the process was down.
    unreachable: AtomicU64,
    stop: AtomicBool,
}

/// Sends requests for `HOST` to `addr` one after another until `load.stop`.
fn load(addr: SocketAddr, load: Arc<Load>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
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
                Err(_) => {
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
async fn endpoints(admin: SocketAddr, token: &str) -> Option<Vec<String>> {
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
fn ips<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let mut ips: Vec<String> = pods.into_iter().map(Pod::ip).collect();
    ips.sort();
    ips
}

const TOKEN: &str = "process-token";

/// A Lab whose controller also drives a `podgate proxy` process (target `process`),
/// the app deployed with two pods per cluster, held by the process and in its file.
async fn lab_with_process(dir: &Path) -> (Lab, Process, Vec<Pod>, Vec<Pod>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_under_load_serves_its_last_state_at_once_and_catches_up_within_1s() {
    let dir = tempfile::tempdir().unwrap();
    let token = TOKEN;
    let (lab, mut proxy, mut idc, tke) = lab_with_process(dir.path()).await;
    let counts = Arc::new(Load::default());
    let client = load(proxy.http, Arc::clone(&counts));
    lab.eventually("load is served", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await
    .unwrap();
    proxy.child.start_kill().unwrap();
    proxy.child.wait().await.unwrap();
    let served_before = counts.ok.load(Ordering::Relaxed);

    // While it is down, a pod scales out in idc: the file does not know it.
    let port = idc[0].addr.port();
    idc.extend(
        pods::start_many("idc", "web", 70, 3, 1, port)
            .await
            .unwrap(),
    );
    lab.apply("idc", &pods::slice_of("app", "web-idc", "web", &idc, &[]))
        .unwrap();
    let now_all = ips(idc.iter().chain(&tke));
    lab.eventually("the controller knows the new pod", WAIT, || async {
        (endpoints(lab.proxy.admin_addr, token_of(&lab).as_str()).await? == now_all).then_some(())
    })
    .await
    .unwrap();

    // Long enough down that the controller's retries are backing off by seconds.
    lab.eventually("the controller backs off", WAIT, || async {
        (target(&lab).await?["failures"].as_u64()? >= 6).then_some(())
    })
    .await
    .unwrap();
    let mut restarted = spawn(dir.path(), proxy.http, proxy.admin).await;
    let started = tokio::time::Instant::now();
    lab.eventually("the restarted proxy holds the new pod", WAIT, || async {
        (endpoints(restarted.admin, token).await? == now_all).then_some(())
    })
    .await
    .unwrap();
    let caught_up = started.elapsed();
    lab.eventually("load is served again", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > served_before + 50).then_some(())
    })
    .await
    .unwrap();

    // Killed and back at once, with nothing to push: only the summary poll can tell.
    restarted.child.start_kill().unwrap();
    restarted.child.wait().await.unwrap();
    let again = spawn(dir.path(), proxy.http, proxy.admin).await;
    let started = tokio::time::Instant::now();
    let instance = summary_instance(again.admin, token).await;
    lab.eventually("the controller sees the new instance", WAIT, || async {
        (target(&lab).await?["instance"] == instance.as_str()).then_some(())
    })
    .await
    .unwrap();
    let noticed = started.elapsed();
    counts.stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let (ok, not_found, other) = (
        counts.ok.load(Ordering::Relaxed),
        counts.not_found.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
    );
    assert_eq!(
        (not_found, other),
        (0, 0),
        "{ok} answered 200; unreachable while down: {}",
        counts.unreachable.load(Ordering::Relaxed)
    );
    assert!(
        caught_up <= Duration::from_secs(1),
        "the controller resynced the restarted proxy after {caught_up:?}"
    );
    assert!(
        noticed <= Duration::from_secs(1),
        "the controller noticed the restart after {noticed:?}"
    );
    assert_eq!(endpoints(again.admin, token).await.unwrap(), now_all);
}

/// The controller's status of the `process` target.
async fn target(lab: &Lab) -> Option<serde_json::Value> {
    let state = lab.admin_state().await.ok()?;
    state["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.starts_with("process")))
        .cloned()
}

async fn summary_instance(admin: SocketAddr, token: &str) -> String {
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

fn token_of(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir.path().join("lb.token"))
        .unwrap()
        .trim()
        .to_owned()
}
