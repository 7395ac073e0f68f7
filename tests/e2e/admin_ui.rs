//! The admin web UI in a real browser: Debian's chromium driven through chromedriver
//! (WebDriver) against a running Lab. The overview lists both clusters and the LB; a
//! pod scaled out shows up without a reload; a weight changed through the UI after
//! logging in with the token reaches the proxy (the traffic split moves), and is
//! refused without it; the "why" of an unroutable pod names the routable networks.
//! Screenshots go to the test's directory, and to `docs/screenshots/` with
//! `PODGATE_UPDATE_SCREENSHOTS=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use podgate::demo::pods;
use podgate::demo::{Configure, Lab, LabOptions};
use serde_json::json;

const HOST: &str = "shop.example.com";
const TOKEN: &str = "ui-test-token";
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100", "--hide-scrollbars"] }),
    );
    // chromedriver speaks plain HTTP on loopback.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// The page's visible text, polled until `want` holds it (or the deadline).
async fn until_text(page: &Client, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = page
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if want(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}: the page shows\n{text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn screenshot(page: &Client, dir: &Path, name: &str) {
    let png = page.screenshot().await.unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
    if std::env::var("PODGATE_UPDATE_SCREENSHOTS").is_ok() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &png).unwrap();
    }
}

async fn lab(dir: &Path) -> Lab {
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let configure = Configure::new(move |config, _| {
        config.admin.token_file = Some(token_file.clone());
        // idc reaches its pods on 127.1.0.0/16 only: anything else is unroutable.
        config.clusters[0].routable_cidrs = Some(vec!["127.1.0.0/16".to_owned()]);
    });
    Lab::start(LabOptions {
        configure: Some(configure),
        ..LabOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_in_a_browser_shows_live_state_and_moves_traffic_only_after_login() {
    let install = "`apt-get install -y chromium chromium-driver`";
    let (Some(_), Some(chromedriver)) = (
        crate::tool::tool("chromium", install),
        crate::tool::tool("chromedriver", install),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lab = lab(dir.path()).await;
    let (idc, tke) = lab.deploy_pods("shop", HOST, 170, 2).await.unwrap();
    let driver = driver(&chromedriver).await;
    let page = browser(&driver).await;
    let admin = format!("http://{}", lab.controller.admin_addr);
    overview(&page, &admin, dir.path()).await;
    let port = tke[0].addr.port();
    let _more = scale_out(&lab, &page, &admin, dir.path(), tke).await;
    set_weights_after_login(&lab, &page, &admin).await;
    drop(idc);
    why_unroutable(&lab, &page, &admin, dir.path(), port).await;
    page.close().await.unwrap();
}

/// Both clusters and the LB, in sync, no problems, the event stream open.
async fn overview(page: &Client, admin: &str, dir: &Path) {
    page.goto(&format!("{admin}/#/overview")).await.unwrap();
    let text = until_text(page, "the overview", |t| {
        t.contains("No problems") && t.contains("idc") && t.contains("tke")
    })
    .await;
    assert!(text.contains("proxy/http://"), "{text}");
    assert!(text.contains("synced"), "{text}");
    let live = page.find(Locator::Id("live")).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while live.text().await.unwrap() != "live" {
        assert!(Instant::now() < deadline, "the event stream never opened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    screenshot(page, dir, "overview.png").await;
}

/// A pod scaled out in tke shows up without a reload, within a second of the admin API
/// having it.
async fn scale_out(
    lab: &Lab,
    page: &Client,
    admin: &str,
    dir: &Path,
    tke: Vec<pods::Pod>,
) -> Vec<pods::Pod> {
    page.goto(&format!("{admin}/#/apps")).await.unwrap();
    until_text(page, "the app's pods", |t| {
        t.contains(&format!("{}:", tke[1].ip()))
    })
    .await;
    let mark = "return document.body.dataset.loaded = document.body.dataset.loaded || String(Math.random());";
    let loaded = page.execute(mark, vec![]).await.unwrap();
    let port = tke[0].addr.port();
    let mut more = tke;
    more.push(
        pods::Pod::start("tke", "web-3", [127, 1, 171, 3].into(), port)
            .await
            .unwrap(),
    );
    lab.apply("tke", &pods::slice_of("shop", "web-tke", "web", &more, &[]))
        .unwrap();
    let new_ip = more[2].ip();
    lab.eventually("the admin API has the new pod", WAIT, || async {
        let apps = lab.admin_json("/v1/apps?q=shop").await.ok()?;
        apps.to_string().contains(&new_ip).then_some(())
    })
    .await
    .unwrap();
    let seen = Instant::now();
    until_text(page, "the scaled-out pod", |t| {
        t.contains(&format!("{new_ip}:"))
    })
    .await;
    let took = seen.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the page showed the new pod {took:?} after the API had it"
    );
    let still = page
        .execute("return document.body.dataset.loaded;", vec![])
        .await
        .unwrap();
    assert_eq!(still, loaded, "the page reloaded");
    screenshot(page, dir, "apps.png").await;
    more
}

/// Read-only without the token (a write from the page is refused); after logging in,
/// idc=0 set in the form sends every request to tke.
async fn set_weights_after_login(lab: &Lab, page: &Client, admin: &str) {
    page.goto(&format!("{admin}/#/overview")).await.unwrap();
    until_text(page, "the weights form", |t| {
        t.contains("Log in with the admin token")
    })
    .await;
    let button = page
        .find(Locator::Css("#global-weights button[type=submit]"))
        .await
        .unwrap();
    assert_eq!(
        button.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    let status = page
        .execute_async(
            "const done = arguments[0]; fetch('/v1/weights', {method: 'PUT', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({weights: 'idc=0,tke=100'})}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));

    page.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    page.find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(page, "the enabled weights form", |t| {
        !t.contains("Log in with the admin token")
    })
    .await;
    let idc_weight = page
        .find(Locator::Css("#global-weights input[name=idc]"))
        .await
        .unwrap();
    idc_weight.clear().await.unwrap();
    idc_weight.send_keys("0").await.unwrap();
    page.find(Locator::Css("#global-weights button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let alert = page.find(Locator::Id("alert")).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !alert
        .text()
        .await
        .unwrap()
        .contains("Global weights set: idc=0,tke=100")
    {
        assert!(
            Instant::now() < deadline,
            "no confirmation: {}",
            alert.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    lab.eventually("all traffic in tke", WAIT, || async {
        let s = lab.split(HOST, 60).await.ok()?;
        (s.cluster("idc") == 0 && s.cluster("tke") == 60).then_some(())
    })
    .await
    .unwrap();
}

/// The "why" of an unroutable pod in idc names idc's routable networks.
async fn why_unroutable(lab: &Lab, page: &Client, admin: &str, dir: &Path, port: u16) {
    let far = podgate_sim::objects::slice("shop", "web-far", "web")
        .port("http", port)
        .ready("10.99.0.5");
    lab.apply("idc", &far.build()).unwrap();
    page.goto(&format!("{admin}/#/why")).await.unwrap();
    let ask = page.find(Locator::Id("why-pod")).await.unwrap();
    ask.send_keys("10.99.0.5").await.unwrap();
    page.find(Locator::Css("main form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = until_text(page, "the why of an unroutable pod", |t| {
        t.contains("outside the cluster's routable networks")
    })
    .await;
    assert!(text.contains("127.1.0.0/16"), "{text}");
    screenshot(page, dir, "why.png").await;
}

/// The apps view carries the built-in proxy's live counters: requests per second,
/// errors, p50/p99 from the difference between two reads, in-flight, rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_view_shows_the_proxys_live_rates_and_latency() {
    let lab = Lab::start(LabOptions::default()).await.unwrap();
    let _pods = lab
        .deploy_pods("live", "live.example.com", 172, 1)
        .await
        .unwrap();
    let first = lab.admin_json("/v1/apps?q=live").await.unwrap();
    let pod = &first["apps"][0]["pods"][0];
    assert!(
        pod["live"][0]["target"]
            .as_str()
            .unwrap()
            .starts_with("proxy/http://"),
        "{pod}"
    );
    let split = lab.split("live.example.com", 200).await.unwrap();
    assert_eq!(
        split.failed,
        0,
        "{split:?} {:?}",
        lab.get("live.example.com", "/").await
    );
    let second = lab.admin_json("/v1/apps?q=live").await.unwrap();
    let rows: Vec<&serde_json::Value> = second["apps"][0]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["live"][0])
        .collect();
    let served: u64 = rows.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert!(served >= 200, "{rows:?}");
    for r in &rows {
        assert!(r["requests_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["errors_per_s"].as_f64(), Some(0.0), "{r}");
        // Loopback pods answer in well under 50 ms.
        assert!(r["p99_ms"].as_u64().unwrap() <= 50, "{r}");
        assert_eq!(r["in_flight"], 0);
    }
}

/// DNS rebinding and cross-site writes: a `Host` that is not the listener's is refused
/// (reads too), a write from another origin is refused, a pod name that is not a DNS
/// name never reaches an API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_other_hosts_other_origins_and_odd_pod_names() {
    let lab = Lab::start(LabOptions::default()).await.unwrap();
    let admin = format!("http://{}", lab.controller.admin_addr);
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let rebound = http
        .get(format!("{admin}/v1/overview"))
        .header("host", "evil.test:9900")
        .send()
        .await
        .unwrap();
    assert_eq!(status(rebound), 403);
    let local = http
        .get(format!("{admin}/v1/overview"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(status(local), 200);
    let cross = http
        .put(format!("{admin}/v1/weights"))
        .header("origin", "http://evil.test")
        .json(&json!({ "weights": "idc=0,tke=100" }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(cross), 403);
    let odd = http
        .get(format!("{admin}/v1/why?pod=shop/a/../../x"))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status().as_u16(), 400);
    assert!(odd.text().await.unwrap().contains("DNS names"));
}
