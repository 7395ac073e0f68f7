//! Endpoints of one upstream: scale out, drain, removal (in-flight requests finish),
//! weights that split traffic. Endpoint changes never reload an LB that reloads.

use super::under_test::{Balance, Kind, Lb};
use crate::harness::{Pod, eventually, key, spread, table, upstream, vhost, who};

use std::time::Duration;

use podgate_core::model::{Batch, ClusterName, EndpointState, PathMatch, Upstream};

const SECS: Duration = Duration::from_secs(15);

fn web_test() -> podgate_core::model::RouteTable {
    table(
        vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
        None,
    )
}

fn endpoints_only(upstreams: Vec<Upstream>) -> Batch {
    Batch {
        epoch: 1,
        upsert_upstreams: upstreams,
        ..Batch::default()
    }
}

pub(crate) async fn scale_out_drain_and_removal(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(3));
    let a = Pod::start("a", &ip(1)).await;
    let b = Pod::start("b", &ip(2)).await;
    lb.apply(&Batch {
        routes: Some(web_test()),
        ..endpoints_only(vec![upstream("web", vec![a.active(1)])])
    })
    .await;
    assert_eq!(who(lb.addr(), "web.test", "/").await, "a");
    let worker = lb.worker().await;

    // Scale out: the new endpoint serves.
    lb.apply(&endpoints_only(vec![upstream(
        "web",
        vec![a.active(1), b.active(1)],
    )]))
    .await;
    match lb.balance() {
        Balance::RoundRobin => {
            let seen = spread(lb.addr(), "web.test", "/", 10).await;
            assert_eq!(
                (seen.get("a"), seen.get("b")),
                (Some(&5), Some(&5)),
                "{seen:?}"
            );
        }
        Balance::Random => {
            // Both serve: all 40 on one has a chance of 2^-39.
            let seen = spread(lb.addr(), "web.test", "/", 40).await;
            let (on_a, on_b) = (seen.get("a"), seen.get("b"));
            assert!(
                seen.len() == 2 && on_a.is_some() && on_b.is_some(),
                "{seen:?}"
            );
        }
    }
    assert_eq!(
        lb.worker().await,
        worker,
        "an endpoint change must not reload the LB"
    );

    // Drain a: it stays registered but gets no new requests.
    lb.apply(&endpoints_only(vec![upstream(
        "web",
        vec![a.draining(), b.active(1)],
    )]))
    .await;
    let before = a.count();
    let seen = spread(lb.addr(), "web.test", "/", 20).await;
    assert_eq!(seen.get("b"), Some(&20), "{seen:?}");
    assert_eq!(a.count(), before, "a draining endpoint got a new request");
    let state = lb.observe().await;
    let eps = &state.upstreams[0].endpoints;
    assert_eq!(eps.len(), 2, "{eps:?}");
    assert!(
        eps.iter()
            .any(|e| e.address == a.addr.ip() && e.state == EndpointState::Draining),
        "{eps:?}"
    );

    // Remove a: gone from the LB.
    lb.apply(&endpoints_only(vec![upstream("web", vec![b.active(1)])]))
        .await;
    assert_eq!(
        lb.observe().await.upstreams,
        vec![upstream("web", vec![b.active(1)])]
    );
    assert_eq!(
        lb.worker().await,
        worker,
        "no reload for drain and removal either"
    );

    // Remove the whole upstream: its endpoints go, requests no longer reach b.
    lb.apply(&Batch {
        epoch: 1,
        remove_upstreams: vec![key("web")],
        ..Batch::default()
    })
    .await;
    let state = lb.observe().await;
    assert!(state.upstreams.is_empty(), "{:?}", state.upstreams);
    assert_ne!(who(lb.addr(), "web.test", "/").await, "b");
}

/// 750 / 250 per-mille between two clusters, one pod each: above HAProxy's 256 (the
/// adapter scales them), the proxy splits by cluster share, the others by endpoint
/// weight.
pub(crate) async fn weights_split_traffic(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(4));
    let a = Pod::start("a", &ip(1)).await;
    let b = Pod::start("b", &ip(2)).await;
    let web = Upstream {
        health_check: None,
        key: key("web"),
        shares: vec![
            (ClusterName::new("idc"), 750),
            (ClusterName::new("tke"), 250),
        ],
        endpoints: vec![
            a.endpoint("idc", EndpointState::Active, 750),
            b.endpoint("tke", EndpointState::Active, 250),
        ],
    };
    lb.apply(&Batch {
        routes: Some(table(vec![], Some("web"))),
        ..endpoints_only(vec![web])
    })
    .await;
    // Round robin: 150 of 200 within ±10; random: 750 of 1,000 within ±70 (5σ).
    let (n, on_a) = match lb.balance() {
        Balance::RoundRobin => (200, 140..=160),
        Balance::Random => (1000, 680..=820),
    };
    let seen = spread(lb.addr(), "any.test", "/", n).await;
    let share_a = seen.get("a").copied().unwrap_or(0);
    assert!(
        on_a.contains(&share_a),
        "expected {on_a:?} of {n} on a: {seen:?}"
    );
    assert_eq!(seen.get("b").copied().unwrap_or(0), n - share_a, "{seen:?}");
    let weights: Vec<u32> = lb.observe().await.upstreams[0]
        .endpoints
        .iter()
        .map(|e| e.weight)
        .collect();
    assert_eq!(
        weights,
        vec![750, 250],
        "observe reports podgate weights when in sync"
    );
}

/// A request in flight on `a` when `a` leaves (drained first, or removed at once)
/// finishes on `a`; new requests go to `b`; the LB lets go of `a` once it is idle,
/// without any further change.
async fn in_flight_request_finishes(kind: Kind, subnet: u8, drain_first: bool) {
    let lb = Lb::start(kind).await;
    let a = Pod::start("a", &format!("127.1.{subnet}.1")).await;
    let b = Pod::start("b", &format!("127.1.{subnet}.2")).await;
    lb.apply(&Batch {
        routes: Some(table(vec![], Some("web"))),
        ..endpoints_only(vec![upstream("web", vec![a.active(1)])])
    })
    .await;
    let addr = lb.addr();
    let slow = tokio::spawn(async move { who(addr, "x.test", "/slow").await });
    eventually("the slow request reached a", SECS, || async {
        if a.count() == 1 {
            Ok(())
        } else {
            Err(format!("a served {}", a.count()))
        }
    })
    .await;

    if drain_first {
        lb.apply(&endpoints_only(vec![upstream(
            "web",
            vec![a.draining(), b.active(1)],
        )]))
        .await;
    }
    lb.apply(&endpoints_only(vec![upstream("web", vec![b.active(1)])]))
        .await;
    assert_eq!(who(lb.addr(), "x.test", "/").await, "b");
    assert_eq!(
        slow.await.unwrap(),
        "a",
        "the in-flight request finished on a"
    );

    // HAProxy deferred the deletion; its drift check (`summary`, every few seconds)
    // retries it, which now succeeds.
    eventually("a is let go once idle", SECS, || async {
        lb.adapter().summary().await.map_err(|e| e.to_string())?;
        if lb.holds_server(a.addr).await? {
            Err("a is still held".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
}

pub(crate) async fn removed_endpoint_finishes_in_flight_requests(kind: Kind) {
    in_flight_request_finishes(kind, kind.subnet(5), false).await;
}

pub(crate) async fn drained_then_removed_endpoint_finishes_in_flight_requests(kind: Kind) {
    in_flight_request_finishes(kind, kind.subnet(6), true).await;
}

/// Active health checks (`Upstream::health_check`): an endpoint whose `/healthz` fails
/// takes no new requests after the threshold, and comes back when it passes again;
/// no LB reload either way.
pub(crate) async fn failing_health_checks_take_an_endpoint_out(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(13));
    let a = Pod::start("a", &ip(1)).await;
    let b = Pod::start("b", &ip(2)).await;
    let check = podgate_core::model::HealthCheck::parse(
        "GET /healthz interval=200ms timeout=150ms healthy=1 unhealthy=2",
    )
    .unwrap();
    let web = Upstream {
        health_check: Some(check),
        ..upstream("web", vec![a.active(1), b.active(1)])
    };
    lb.apply(&Batch {
        routes: Some(web_test()),
        ..endpoints_only(vec![web])
    })
    .await;
    eventually("both serve", SECS, || async {
        let seen = spread(lb.addr(), "web.test", "/", 20).await;
        if seen.len() == 2 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let worker = lb.worker().await;

    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually("b is taken out", SECS, || async {
        let seen = spread(lb.addr(), "web.test", "/", 10).await;
        if seen.get("a") == Some(&10) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    // Out for good while failing: no request reaches it.
    let before = b.count();
    let seen = spread(lb.addr(), "web.test", "/", 30).await;
    assert_eq!((seen.get("a"), b.count()), (Some(&30), before), "{seen:?}");

    b.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("b is back", SECS, || async {
        let seen = spread(lb.addr(), "web.test", "/", 20).await;
        if seen.contains_key("b") {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    assert_eq!(
        lb.worker().await,
        worker,
        "health checks must not reload the LB"
    );
}
