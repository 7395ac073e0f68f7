//! The admin view at scale (issue 14): 2 simulated clusters × 5,000 Services × 15
//! endpoints (150,000 endpoints, 5,000 Ingresses, 5,000 upstreams) in a Lab (simulated
//! API servers, the built-in proxy and the controller in this process).
//!
//! Measures, once every endpoint is in the controller's Index: the time and size of the
//! read API's answers the web UI and the CLI make (`/v1/overview`, the first page of
//! `/v1/apps`, a filtered `/v1/apps`, `/v1/why`, `/v1/explain`; median and max of 20),
//! and — when chromium and chromedriver are installed — the web UI's first meaningful
//! paint in headless chromium: from navigation start to the first page with data on
//! screen (the app's `data-first-render-ms`), for the overview and the apps page.
//!
//! ```sh
//! cargo bench --bench admin_ui          # PG_BENCH_SERVICES (5000), PG_BENCH_ENDPOINTS (15)
//! ```
//!
//! Endpoint addresses are 10.x.y.z and never receive a connection.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use fantoccini::ClientBuilder;
use podgate::demo::{Lab, LabOptions};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load(lab: &Lab, services: usize, endpoints: usize) -> Result<(), Error> {
    for (c, cluster) in ["idc", "tke"].into_iter().enumerate() {
        let sim = lab.sim(cluster);
        sim.apply(&default_class(ingress_class(
            "podgate",
            &lab.config.controller_name,
        )))?;
        sim.apply_json(serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "apps" } }))?;
        for s in 0..services {
            let svc = format!("svc-{s}");
            sim.apply(&service("apps", &svc).port("http", 80).build())?;
            let mut b = slice("apps", &format!("{svc}-abcde"), &svc).port("http", 8080);
            for e in 0..endpoints {
                let n = s * endpoints + e;
                b = b
                    .ready(&format!(
                        "10.{}.{}.{}",
                        10 + c * 2 + n / 65536,
                        (n / 256) % 256,
                        n % 256
                    ))
                    .at(
                        &format!("zone-{}", e % 3),
                        &format!("node-{}", (s + e) % 500),
                    );
            }
            sim.apply(&b.build())?;
            if s % 2 == c {
                let host = format!("app-{s}.example.com");
                sim.apply(
                    &ingress("apps", &svc)
                        .route(&host, "Prefix", "/", &svc, 80)
                        .build(),
                )?;
            }
        }
    }
    Ok(())
}

async fn time_get(http: &reqwest::Client, url: &str) -> Result<(Duration, Duration, usize), Error> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let body = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        times.push(t.elapsed());
        size = body.len();
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() - 1], size))
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Milliseconds from navigation start to the first page with data, for each page.
async fn first_paint(admin: &str, pages: &[&str]) -> Result<Vec<(String, u64)>, Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("chromedriver did not listen".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".to_owned(), serde_json::json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100"] }));
    let page = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    let mut out = Vec::new();
    for p in pages {
        // A fresh document each time: first paint, not a hash change.
        page.goto("about:blank").await?;
        page.goto(&format!("{admin}/#/{p}")).await?;
        let deadline = Instant::now() + Duration::from_mins(1);
        let ms = loop {
            let v = page
                .execute(
                    "return document.body && document.body.dataset.firstRenderMs || null;",
                    vec![],
                )
                .await?;
            if let Some(ms) = v.as_str().and_then(|s| s.parse::<u64>().ok()) {
                break ms;
            }
            if Instant::now() > deadline {
                return Err(format!("{p}: never rendered").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        out.push(((*p).to_owned(), ms));
    }
    page.close().await?;
    let _ = driver.kill();
    let _ = driver.wait();
    Ok(out)
}

async fn bench() -> Result<(), Error> {
    let services = env_usize("PG_BENCH_SERVICES", 5000);
    let endpoints = env_usize("PG_BENCH_ENDPOINTS", 15);
    let lab = Lab::start(LabOptions::default()).await?;
    let t = Instant::now();
    load(&lab, services, endpoints)?;
    let want = services * endpoints * 2;
    let admin = format!("http://{}", lab.controller.admin_addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_mins(1))
        .build()?;
    loop {
        let o: serde_json::Value = http
            .get(format!("{admin}/v1/overview"))
            .send()
            .await?
            .json()
            .await?;
        if o["counts"]["endpoints"].as_u64() == Some(want as u64) {
            break;
        }
        if t.elapsed() > Duration::from_mins(10) {
            return Err(format!(
                "only {} of {want} endpoints after 600 s",
                o["counts"]["endpoints"]
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{services} upstreams, {want} endpoints in the Index after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("| request | median | max | bytes |\n| --- | ---: | ---: | ---: |");
    let last = services - 1;
    for path in [
        "/v1/overview".to_owned(),
        "/v1/apps?page=1".to_owned(),
        format!("/v1/apps?q=app-{last}.example.com"),
        "/v1/why?ip=10.10.0.5".to_owned(),
        format!("/v1/explain?url=https://app-{last}.example.com/x"),
    ] {
        let (median, max, size) = time_get(&http, &format!("{admin}{path}")).await?;
        println!(
            "| `{path}` | {:.1} ms | {:.1} ms | {size} |",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    if on_path("chromium") && on_path("chromedriver") {
        for (page, ms) in first_paint(&admin, &["overview", "apps"]).await? {
            println!(
                "first meaningful paint, {page}: {ms} ms (navigation start → first page with data)"
            );
        }
    } else {
        println!("chromium/chromedriver not installed: no first-paint figure");
    }
    Ok(())
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("admin_ui bench: {e}");
            ExitCode::FAILURE
        }
    }
}
