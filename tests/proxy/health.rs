//! Active health checks against an endpoint whose `/healthz` flaps: the thresholds
//! bound it. Fewer failures in a row than `unhealthy_threshold` never take it out, and
//! once out, fewer passes in a row than `healthy_threshold` never bring it back.

use crate::harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::{TOKEN, admin, proxy, push};
use podgate_core::model::{Batch, Endpoint, EndpointState, HealthCheck, Upstream};
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
            vec![Endpoint {
                cluster: "idc".into(),
                address: addr.ip(),
                port: addr.port(),
                zone: None,
                node: None,
                state: EndpointState::Active,
                weight: 1,
            }],
        )
    }
}

/// Watches the endpoint's health for `checks` more checks; whether it was ever unhealthy.
async fn ever_unhealthy(
    proxy: &podgate::proxy::ProxyHandle,
    counter: &AtomicUsize,
    checks: usize,
) -> bool {
    let until = counter.load(Ordering::SeqCst) + checks;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while counter.load(Ordering::SeqCst) < until {
        assert!(tokio::time::Instant::now() < deadline, "the checks stopped");
        let (_, body) = admin(
            proxy,
            "GET",
            "/v1/upstreams/default/web/80",
            Some(TOKEN),
            "",
        )
        .await;
        seen |= body.contains("\"unhealthy\":true");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_endpoint_is_bounded_by_the_thresholds() {
    // Two failures, one pass, again and again: never three failures in a row.
    let (addr, checks) = flapping(33, &[false, false, true]).await;
    let proxy = proxy().await;
    let check = "GET /healthz interval=100ms timeout=50ms healthy=2 unhealthy=3";
    push(
        &proxy,
        &Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(addr, check)],
            ..Batch::default()
        },
    )
    .await;
    assert!(
        !ever_unhealthy(&proxy, &checks, 15).await,
        "two failures in a row took it out (unhealthy=3)"
    );

    // Three failures, then one pass, again and again: out after the third failure,
    // and one pass never brings it back (healthy=2).
    let (addr, checks) = flapping(34, &[false, false, false, true]).await;
    push(
        &proxy,
        &Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(addr, check)],
            ..Batch::default()
        },
    )
    .await;
    // Out once it has failed three times in a row, and never back with one pass.
    let until = checks.load(Ordering::SeqCst) + 4;
    while checks.load(Ordering::SeqCst) < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = admin(
            &proxy,
            "GET",
            "/v1/upstreams/default/web/80",
            Some(TOKEN),
            "",
        )
        .await;
        if body.contains("\"unhealthy\":true") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "three failures in a row did not take it out: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let until = checks.load(Ordering::SeqCst) + 12;
    while checks.load(Ordering::SeqCst) < until {
        let (_, body) = admin(
            &proxy,
            "GET",
            "/v1/upstreams/default/web/80",
            Some(TOKEN),
            "",
        )
        .await;
        assert!(
            body.contains("\"unhealthy\":true"),
            "one pass brought it back (healthy=2): {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
