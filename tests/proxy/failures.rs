//! Failures through the real proxy: dead endpoints, a backend killed under load,
//! passive outlier ejection and recovery, upstream timeouts.

use crate::harness;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use harness::{
    Backend, TOKEN, admin, client, eventually, get, proxy, proxy_with, push, routes, send, upstream,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use podgate_core::model::{Batch, EndpointState, PathMatch};

fn one_route(service: &str) -> podgate_core::model::RouteTable {
    routes(&[("f.example.com", PathMatch::prefix("/"), service)])
}

/// A loopback address where nothing listens.
async fn dead_endpoint(third: u8, fourth: u8) -> podgate_core::model::Endpoint {
    let ip = std::net::Ipv4Addr::new(127, 1, third, fourth);
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    harness::endpoint_at(addr, "idc", EndpointState::Active)
}

#[tokio::test]
async fn a_refused_connection_is_retried_elsewhere_even_with_a_body() {
    let live = Backend::start("live", 6, 1).await;
    let proxy = proxy_with(|c| c.outlier.consecutive_failures = 1_000).await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![
                    dead_endpoint(6, 2).await,
                    dead_endpoint(6, 3).await,
                    live.endpoint("idc", EndpointState::Active),
                ],
            )],
            routes: Some(one_route("web")),
            ..Batch::default()
        },
    )
    .await;
    let c = client();
    for i in 0..30 {
        let req = Request::post(format!("http://{}/p", proxy.http_addr))
            .header("host", "f.example.com")
            .body(Full::new(Bytes::from(format!("n{i}"))))
            .unwrap();
        let a = send(&c, req).await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.body);
        assert_eq!(
            a.body,
            format!("live /p n{i}"),
            "the body survived the retry"
        );
    }
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    assert!(
        !metrics.contains("podgate_proxy_retries_total 0\n"),
        "no retry happened, so this test proved nothing:\n{metrics}"
    );
}

#[tokio::test]
async fn a_backend_killed_under_load_fails_no_idempotent_request() {
    let (a, b, victim) = tokio::join!(
        Backend::start("a", 7, 1),
        Backend::start("b", 7, 2),
        Backend::start("victim", 7, 3),
    );
    let proxy = Arc::new(proxy().await);
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![
                    a.endpoint("idc", EndpointState::Active),
                    b.endpoint("idc", EndpointState::Active),
                    victim.endpoint("idc", EndpointState::Active),
                ],
            )],
            routes: Some(one_route("web")),
            ..Batch::default()
        },
    )
    .await;
    let load = |p: Arc<podgate::proxy::ProxyHandle>| async move {
        let c = client();
        let mut statuses = Vec::new();
        for _ in 0..300 {
            let r = get(&c, &p, "f.example.com", "/").await;
            statuses.push((r.status, r.body));
        }
        statuses
    };
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(Arc::clone(&proxy))))
        .collect();
    eventually(
        "the victim serves some traffic",
        Duration::from_secs(10),
        || {
            let hits = victim.hits();
            async move { hits >= 30 }
        },
    )
    .await;
    victim.kill();
    let killed_at = victim.hits();
    let mut total = 0;
    for w in workers {
        for (status, body) in w.await.unwrap() {
            assert_eq!(status, StatusCode::OK, "failed request: {body}");
            total += 1;
        }
    }
    assert_eq!(total, 1_200);
    assert_eq!(victim.hits(), killed_at, "a dead backend answered");
    assert!(a.hits() + b.hits() > 600, "the survivors took the load");
}

#[tokio::test]
async fn failing_endpoint_is_ejected_then_readmitted() {
    let (good, bad) = tokio::join!(Backend::start("good", 8, 1), Backend::start("bad", 8, 2));
    let proxy = proxy_with(|c| {
        c.outlier.consecutive_failures = 3;
        // Long enough for the 40 requests below even on a loaded machine.
        c.outlier.base_ejection_ms = 5_000;
        c.outlier.max_ejection_ms = 5_000;
    })
    .await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream(
                "web",
                &[],
                vec![
                    good.endpoint("idc", EndpointState::Active),
                    bad.endpoint("idc", EndpointState::Active),
                ],
            )],
            routes: Some(one_route("web")),
            ..Batch::default()
        },
    )
    .await;
    bad.failing.store(true, Ordering::SeqCst);
    let c = client();
    // Until it is ejected the bad endpoint answers 500s, passed through as they are.
    let mut errors = 0;
    while bad.hits() < 3 {
        let a = get(&c, &proxy, "f.example.com", "/").await;
        if a.status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        }
        assert!(errors <= 3, "more 500s than the ejection threshold");
    }
    let ejected_at = bad.hits();
    for _ in 0..40 {
        let a = get(&c, &proxy, "f.example.com", "/").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.backend(), Some("good"));
    }
    assert_eq!(bad.hits(), ejected_at, "an ejected endpoint got requests");

    // Healthy again: after the ejection time it takes traffic again.
    bad.failing.store(false, Ordering::SeqCst);
    eventually(
        "the endpoint is readmitted",
        Duration::from_secs(15),
        || {
            let c = c.clone();
            let proxy = &proxy;
            async move { get(&c, proxy, "f.example.com", "/").await.backend() == Some("bad") }
        },
    )
    .await;
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    assert!(
        metrics.contains("podgate_proxy_ejections_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_silent_upstream_times_out_with_504() {
    let silent = tokio::net::TcpListener::bind("127.1.9.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    // Accepts and holds connections without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let proxy = proxy_with(|c| c.timeouts.upstream_response_ms = 200).await;
    let mut ep = dead_endpoint(9, 2).await;
    ep.address = addr.ip();
    ep.port = addr.port();
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream("web", &[], vec![ep])],
            routes: Some(one_route("web")),
            ..Batch::default()
        },
    )
    .await;
    let a = get(&client(), &proxy, "f.example.com", "/").await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(a.body.contains("timed out"), "{}", a.body);
    holder.abort();
}

/// Sends `request` raw and reads until the proxy closes or 2 s pass; the answer so far.
async fn raw_exchange(
    proxy: &podgate::proxy::ProxyHandle,
    request: &[u8],
    half_close: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy.http_addr)
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_broken_body_never_counts_against_the_endpoint() {
    let pod = Backend::start("web", 17, 1).await;
    // Ejection after 3 failures in a row (the harness), so 5 of each would eject.
    let proxy = harness::routed_with(
        |c| c.timeouts.upstream_response_ms = 300,
        "f.example.com",
        pod.endpoint("idc", EndpointState::Active),
    )
    .await;
    let head = "POST / HTTP/1.1\r\nHost: f.example.com\r\n";
    for _ in 0..5 {
        // A bad chunk size (the general path).
        let bad = format!("{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n");
        let answer = raw_exchange(&proxy, bad.as_bytes(), false).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer:?}"
        );
        // A chunked upload the client aborts.
        let aborted = format!("{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        let answer = raw_exchange(&proxy, aborted.as_bytes(), true).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer:?}"
        );
        // A Content-Length upload that stalls (the fast path).
        let stalled = format!("{head}Content-Length: 100\r\n\r\nhello");
        let answer = raw_exchange(&proxy, stalled.as_bytes(), false).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    let (_, metrics) = admin(&proxy, "GET", "/metrics", Some(TOKEN), "").await;
    assert!(
        metrics.contains("podgate_proxy_upstream_failures_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podgate_proxy_ejections_total 0\n"),
        "{metrics}"
    );
    let answer = get(&client(), &proxy, "f.example.com", "/").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}
