//! Active health checks against an endpoint whose `/healthz` flaps: the thresholds
//! bound it. Fewer failures in a row than `unhealthy_threshold` never take it out, and
//! once out, fewer passes in a row than `healthy_threshold` never bring it back.

use crate::harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{TOKEN, admin, proxy, push};
use podgate_core::model::{Batch, EndpointState, HealthCheck, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A pod on 127.1.`third`.1 whose n-th health check (from 0) passes when `pattern`
/// says so (it repeats); counts the checks it answered.
async fn flapping(third: u8, pattern: &'static [bool]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::new(127, 1, third, 1), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let checks = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&checks);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let status = if pattern[n % pattern.len()] {
                "200 OK"
            } else {
                "503 Down"
            };
            let _ = conn
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    (addr, checks)
}

fn upstream(addr: std::net::SocketAddr, check: &str) -> Upstream {
    Upstream {
        health_check: Some(HealthCheck::parse(check).unwrap()),
        ..harness::upstream(
            "web",
            &[],
            vec![harness::endpoint_at(addr, "idc", EndpointState::Active)],
        )
    }
}

/// Whether the proxy marks the endpoint of `default/web:80` unhealthy now.
async fn unhealthy(proxy: &podgate::proxy::ProxyHandle) -> bool {
    let (_, body) = admin(
        proxy,
        "GET",
        "/v1/upstreams/default/web/80",
        Some(TOKEN),
        "",
    )
    .await;
    body.contains("\"unhealthy\":true")
}

/// Pushes `default/web:80` with the one endpoint `addr`, checked by `check`.
async fn push_checked(
    proxy: &podgate::proxy::ProxyHandle,
    addr: std::net::SocketAddr,
    check: &str,
) {
    push(
        proxy,
        &Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(addr, check)],
            ..Batch::default()
        },
    )
    .await;
}

/// Runs `each` until the pod has answered `checks` more checks (within 20 s).
async fn for_checks<F, Fut>(counter: &AtomicUsize, checks: usize, mut each: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let until = counter.load(Ordering::SeqCst) + checks;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counter.load(Ordering::SeqCst) < until {
        assert!(tokio::time::Instant::now() < deadline, "the checks stopped");
        each().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_endpoint_is_bounded_by_the_thresholds() {
    // Two failures, one pass, again and again: never three failures in a row.
    let (addr, checks) = flapping(33, &[false, false, true]).await;
    let proxy = proxy().await;
    let check = "GET /healthz interval=100ms timeout=50ms healthy=2 unhealthy=3";
    push_checked(&proxy, addr, check).await;
    let ever = std::cell::Cell::new(false);
    for_checks(&checks, 15, || async {
        if unhealthy(&proxy).await {
            ever.set(true);
        }
    })
    .await;
    assert!(
        !ever.get(),
        "two failures in a row took it out (unhealthy=3)"
    );

    // Three failures, then one pass, again and again: out after the third failure,
    // and one pass never brings it back (healthy=2).
    let (addr, checks) = flapping(34, &[false, false, false, true]).await;
    push_checked(&proxy, addr, check).await;
    for_checks(&checks, 4, || async {}).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !unhealthy(&proxy).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "three failures in a row did not take it out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for_checks(&checks, 12, || async {
        assert!(
            unhealthy(&proxy).await,
            "one pass brought it back (healthy=2)"
        );
    })
    .await;
}
