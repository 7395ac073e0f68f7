//! The pure parts of failover damping and stale clusters: hold-down state machine,
//! expired clusters, and the withdrawal a relist would cause (floor guard).

use crate::common;

use common::{idc, index, tke};
use podgate_core::index::{Index, Input, Kind, Object, Withdrawal};
use podgate_core::model::{ClusterName, PortRef, UpstreamKey};
use podgate_sim::objects::{ingress, service, slice};

fn web() -> UpstreamKey {
    UpstreamKey::new("shop", "web", PortRef::Number(80))
}

/// shop/web:80 in both clusters, each with one ready pod, hold-down on.
fn shop() -> Index {
    let mut index = index();
    index.dispatch(Input::HoldDown(true));
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    for c in [idc(), tke()] {
        index.apply(&c, service("shop", "web").port("http", 80));
    }
    up(&mut index, &idc(), "10.0.0.1");
    up(&mut index, &tke(), "10.1.0.1");
    index
}

fn name(c: &ClusterName) -> &'static str {
    if c.as_str() == "idc" {
        "web-idc"
    } else {
        "web-tke"
    }
}

/// The cluster's pods are ready at `addresses`.
fn up(index: &mut Index, c: &ClusterName, address: &str) -> podgate_core::index::Changes {
    index.apply(
        c,
        slice("shop", name(c), "web")
            .port("http", 8080)
            .ready(address),
    )
}

/// The cluster's app is scaled to zero.
fn down(index: &mut Index, c: &ClusterName) -> podgate_core::index::Changes {
    index.apply(c, slice("shop", name(c), "web").port("http", 8080))
}

fn shares(index: &Index) -> Vec<(ClusterName, u32)> {
    index.upstream(&web()).unwrap().shares.clone()
}

#[test]
fn first_appearance_is_not_held() {
    let index = shop();
    assert_eq!(shares(&index), [(idc(), 500), (tke(), 500)]);
    assert!(index.holds().is_empty());
}

#[test]
fn a_recovered_cluster_is_held_until_released() {
    let mut index = shop();
    let lost = down(&mut index, &tke());
    assert!(lost.upstreams.contains(&web()), "failover is immediate");
    assert_eq!(shares(&index), [(idc(), 1000)]);

    let back = up(&mut index, &tke(), "10.1.0.2");
    assert_eq!(back.held.len(), 1, "{back:?}");
    let hold = back.held.iter().next().unwrap().clone();
    assert_eq!(
        (hold.upstream.clone(), hold.cluster.clone()),
        (web(), tke())
    );
    assert!(back.upstreams.is_empty(), "held: nothing to push");
    assert_eq!(shares(&index), [(idc(), 1000)]);
    assert!(
        index
            .upstream(&web())
            .unwrap()
            .endpoints
            .iter()
            .all(|e| e.cluster == idc()),
        "a held cluster's Active endpoints are not pushed"
    );
    assert_eq!(index.holds(), std::slice::from_ref(&hold));

    let released = index.dispatch(Input::HoldReleased(hold.clone()));
    assert!(released.upstreams.contains(&web()));
    assert_eq!(shares(&index), [(idc(), 500), (tke(), 500)]);
    assert!(index.holds().is_empty());
    assert!(
        index.dispatch(Input::HoldReleased(hold.clone())).is_empty(),
        "released once only"
    );
}

#[test]
fn a_flap_re_arms_the_hold_and_changes_nothing_pushed() {
    let mut index = shop();
    down(&mut index, &tke());
    let first = up(&mut index, &tke(), "10.1.0.2").held;
    let first = first.iter().next().unwrap().clone();
    // Flapping while held: no upstream change at all.
    for _ in 0..5 {
        assert!(down(&mut index, &tke()).is_empty());
        assert!(up(&mut index, &tke(), "10.1.0.2").is_empty());
    }
    let latest = index.holds();
    assert_eq!(latest.len(), 1);
    assert!(latest[0].generation > first.generation);
    // The old timer ending releases nothing; the newest one does.
    assert!(
        index
            .dispatch(Input::HoldReleased(first.clone()))
            .is_empty()
    );
    assert_eq!(shares(&index), [(idc(), 1000)]);
    assert!(
        !index
            .dispatch(Input::HoldReleased(latest[0].clone()))
            .is_empty()
    );
    assert_eq!(shares(&index), [(idc(), 500), (tke(), 500)]);
}

#[test]
fn no_hold_when_nobody_else_serves() {
    let mut index = shop();
    down(&mut index, &tke());
    up(&mut index, &tke(), "10.1.0.2");
    assert_eq!(index.holds().len(), 1);
    // idc goes away while tke is held: tke serves at once.
    down(&mut index, &idc());
    assert_eq!(shares(&index), [(tke(), 1000)]);
    assert!(index.holds().is_empty());
    // Both down, then tke back alone: not held (nobody else would serve).
    down(&mut index, &tke());
    let back = up(&mut index, &tke(), "10.1.0.3");
    assert!(back.held.is_empty());
    assert_eq!(shares(&index), [(tke(), 1000)]);
}

#[test]
fn hold_down_off_by_default_and_turning_it_off_releases() {
    let mut index = shop();
    index.dispatch(Input::HoldDown(false));
    down(&mut index, &tke());
    assert!(up(&mut index, &tke(), "10.1.0.2").held.is_empty());
    assert_eq!(shares(&index), [(idc(), 500), (tke(), 500)]);

    index.dispatch(Input::HoldDown(true));
    down(&mut index, &tke());
    up(&mut index, &tke(), "10.1.0.2");
    assert_eq!(shares(&index), [(idc(), 1000)]);
    let off = index.dispatch(Input::HoldDown(false));
    assert!(off.upstreams.contains(&web()));
    assert_eq!(shares(&index), [(idc(), 500), (tke(), 500)]);
}

#[test]
fn an_expired_cluster_is_withdrawn_and_returns() {
    let mut index = shop();
    index.dispatch(Input::HoldDown(false));
    let gone = index.dispatch(Input::ClusterExpired {
        cluster: tke(),
        expired: true,
    });
    assert!(gone.upstreams.contains(&web()));
    assert!(index.cluster_expired(&tke()));
    let up = index.upstream(&web()).unwrap();
    assert!(up.endpoints.iter().all(|e| e.cluster == idc()));
    assert!(
        index
            .dispatch(Input::ClusterExpired {
                cluster: tke(),
                expired: true
            })
            .is_empty(),
        "idempotent"
    );
    // Events while expired are kept, and show when it returns.
    self::up(&mut index, &tke(), "10.1.0.9");
    assert!(
        index
            .upstream(&web())
            .unwrap()
            .endpoints
            .iter()
            .all(|e| e.cluster == idc())
    );
    index.dispatch(Input::ClusterExpired {
        cluster: tke(),
        expired: false,
    });
    let addrs: Vec<String> = index
        .upstream(&web())
        .unwrap()
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(addrs, ["10.0.0.1", "10.1.0.9"]);
}

fn slices(c: &ClusterName, count: usize) -> Vec<Object> {
    let mut s = slice("shop", name(c), "web").port("http", 8080);
    for i in 0..count {
        s = s.ready(&format!("10.1.1.{i}"));
    }
    vec![Object::from(s.build())]
}

#[test]
fn a_relist_reports_what_it_would_withdraw_without_changing_anything() {
    let mut index = shop();
    index.reset(&tke(), Kind::EndpointSlice, &slices(&tke(), 10));
    let before = index.snapshot().generation;
    let w = index.relist_withdrawal(&tke(), &slices(&tke(), 2));
    assert_eq!(
        w,
        Withdrawal {
            before: 10,
            withdrawn: 8
        }
    );
    assert!(w.exceeds(0.5));
    assert_eq!(index.snapshot().generation, before, "nothing changed");
    assert_eq!(
        index
            .relist_withdrawal(&tke(), &slices(&tke(), 12))
            .withdrawn,
        0
    );
    assert_eq!(index.relist_withdrawal(&tke(), &[]).withdrawn, 10);
    assert_eq!(
        index.relist_withdrawal(&ClusterName::new("nowhere"), &[]),
        Withdrawal::default()
    );
}

#[test]
fn a_watch_event_reports_what_it_would_withdraw() {
    let mut index = shop();
    index.reset(&tke(), Kind::EndpointSlice, &slices(&tke(), 10));
    let shrunk = slices(&tke(), 3).remove(0);
    let w = index.slice_withdrawal(&tke(), "shop", name(&tke()), Some(&shrunk));
    assert_eq!(
        w,
        Withdrawal {
            before: 10,
            withdrawn: 7
        }
    );
    let w = index.slice_withdrawal(&tke(), "shop", name(&tke()), None);
    assert_eq!(
        w,
        Withdrawal {
            before: 10,
            withdrawn: 10
        }
    );
    let grown = slices(&tke(), 11).remove(0);
    let w = index.slice_withdrawal(&tke(), "shop", name(&tke()), Some(&grown));
    assert_eq!(w, Withdrawal::default());
    // An address that moved to another slice of the service is not withdrawn.
    let mut other = slice("shop", "web-tke-2", "web").port("http", 8080);
    for i in 0..10 {
        other = other.ready(&format!("10.1.1.{i}"));
    }
    index.apply(&tke(), other);
    let w = index.slice_withdrawal(&tke(), "shop", name(&tke()), None);
    assert_eq!(w.withdrawn, 0);
    assert_eq!(
        index.slice_withdrawal(&tke(), "shop", "unknown", None),
        Withdrawal::default()
    );
}
