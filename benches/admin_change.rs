//! (d) Cost of one change on the LB side: with N upstreams and N hosts loaded, the
//! admin API call that adds, drains or removes one endpoint, from request to the new
//! state being live (the answer comes after the new snapshot is published). Run for
//! N = 1,000 and 10,000 to show the cost does not grow with N.
//!
//! Run: `cargo bench --bench admin_change` (release build, one keep-alive connection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podgate::proxy::{ProxyConfig, start};
use podgate_core::model::{
    Batch, Endpoint, EndpointState, HostPattern, PathMatch, PortRef, Route, RouteTable, Upstream,
    UpstreamKey, VirtualHost,
};

fn key(i: usize) -> UpstreamKey {
    UpstreamKey::new("bench", &format!("svc-{i}"), PortRef::Number(80))
}

fn endpoint(i: usize, j: usize, state: EndpointState) -> Endpoint {
    Endpoint {
        cluster: if j.is_multiple_of(2) { "idc" } else { "tke" }.into(),
        address: [
            127,
            2,
            u8::try_from(i % 250).unwrap(),
            u8::try_from(j + 1).unwrap(),
        ]
        .into(),
        port: 8080,
        zone: None,
        node: None,
        state,
        weight: 250,
    }
}

fn upstream(i: usize, endpoints: Vec<Endpoint>) -> Upstream {
    Upstream {
        health_check: None,
        key: key(i),
        shares: vec![("idc".into(), 500), ("tke".into(), 500)],
        endpoints,
    }
}

fn load(n: usize) -> Batch {
    let mut hosts = BTreeMap::new();
    for i in 0..n {
        hosts.insert(
            HostPattern::parse(&format!("svc-{i}.example.com")).unwrap(),
            VirtualHost {
                routes: vec![Route {
                    path: PathMatch::prefix("/"),
                    upstream: key(i),
                }],
                default_backend: None,
                tls: None,
                rules: Vec::new(),
            },
        );
    }
    Batch {
        epoch: 1,
        upsert_upstreams: (0..n)
            .map(|i| {
                upstream(
                    i,
                    (0..4)
                        .map(|j| endpoint(i, j, EndpointState::Active))
                        .collect(),
                )
            })
            .collect(),
        routes: Some(RouteTable {
            any_host: None,
            hosts,
            default_backend: None,
        }),
        ..Batch::default()
    }
}

async fn measure(n: usize, changes: usize) -> (Duration, Duration) {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let proxy = start(ProxyConfig::new(local, local, "t")).await.unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("{}/v1/batch", proxy.admin_url());
    let post = |body: Vec<u8>| {
        let req = http::Request::post(&url)
            .header("authorization", "Bearer t")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let c = client.clone();
        async move {
            let resp = c.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap();
        }
    };
    post(serde_json::to_vec(&load(n)).unwrap()).await;
    let mut times = Vec::with_capacity(changes);
    for c in 0..changes {
        let i = (c * 7919) % n;
        // Cycle through: add a fifth endpoint, drain it, remove it.
        let mut eps: Vec<Endpoint> = (0..4)
            .map(|j| endpoint(i, j, EndpointState::Active))
            .collect();
        match c % 3 {
            0 => eps.push(endpoint(i, 4, EndpointState::Active)),
            1 => eps.push(endpoint(i, 4, EndpointState::Draining)),
            _ => {}
        }
        let body = serde_json::to_vec(&Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(i, eps)],
            ..Batch::default()
        })
        .unwrap();
        let t = Instant::now();
        post(body).await;
        times.push(t.elapsed());
    }
    times.sort();
    proxy.shutdown().await;
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("| upstreams and hosts loaded | median per change | p99 per change |");
    println!("| ---: | ---: | ---: |");
    for n in [1_000, 10_000] {
        let (median, p99) = rt.block_on(measure(n, 3_000));
        println!(
            "| {n} | {:.3} ms | {:.3} ms |",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
