//! Pods held back only by podgate's readiness gate: their not-ready endpoints count as
//! Active while the pod watcher says their containers are ready, and only then.

use crate::common;

use common::{idc, index};
use podgate_core::index::{Index, Input};
use podgate_core::model::{EndpointState, PortRef, UpstreamKey};
use podgate_sim::objects::{ingress, service, slice};

fn web() -> UpstreamKey {
    UpstreamKey::new("shop", "web", PortRef::Number(80))
}

fn shop() -> Index {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    index.apply(&idc(), service("shop", "web").port("http", 80));
    index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .not_ready("10.0.0.2")
            .terminating("10.0.0.3"),
    );
    index
}

fn active(index: &Index) -> Vec<String> {
    index.upstream(&web()).map_or_else(Vec::new, |u| {
        u.endpoints
            .iter()
            .filter(|e| e.state == EndpointState::Active)
            .map(|e| e.address.to_string())
            .collect()
    })
}

fn gated(address: &str, ready: bool) -> Input {
    Input::GatedPod {
        cluster: idc(),
        address: address.parse().unwrap(),
        ready,
    }
}

#[test]
fn a_gated_pod_with_ready_containers_is_active_and_leaves_when_they_are_not() {
    let mut index = shop();
    assert_eq!(active(&index), ["10.0.0.1"]);

    let changes = index.dispatch(gated("10.0.0.2", true));
    assert_eq!(changes.upstreams.into_iter().collect::<Vec<_>>(), [web()]);
    assert_eq!(active(&index), ["10.0.0.1", "10.0.0.2"]);
    // Said twice: nothing changes.
    assert!(index.dispatch(gated("10.0.0.2", true)).is_empty());

    assert!(!index.dispatch(gated("10.0.0.2", false)).is_empty());
    assert_eq!(active(&index), ["10.0.0.1"]);
}

#[test]
fn the_gate_never_revives_a_terminating_endpoint_or_touches_a_ready_one() {
    let mut index = shop();
    assert!(index.dispatch(gated("10.0.0.3", true)).is_empty());
    assert!(index.dispatch(gated("10.0.0.1", true)).is_empty());
    let draining: Vec<_> = index
        .upstream(&web())
        .unwrap()
        .endpoints
        .iter()
        .filter(|e| e.state == EndpointState::Draining)
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(draining, ["10.0.0.3"]);
    // A gated pod whose endpoint turns Ready (the gate was set True) changes nothing.
    index.dispatch(gated("10.0.0.2", true));
    let changes = index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .ready("10.0.0.2")
            .terminating("10.0.0.3"),
    );
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn a_gated_pod_reported_before_its_slice_counts_once_the_slice_arrives() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    index.apply(&idc(), service("shop", "web").port("http", 80));
    index.dispatch(gated("10.0.0.9", true));
    index.apply(
        &idc(),
        slice("shop", "web-2", "web")
            .port("http", 8080)
            .not_ready("10.0.0.9"),
    );
    assert_eq!(active(&index), ["10.0.0.9"]);
    // The slice goes away: the address is forgotten by the slice index too.
    index.apply(&idc(), slice("shop", "web-2", "web").port("http", 8080));
    assert!(active(&index).is_empty());
    assert!(index.dispatch(gated("10.0.0.9", false)).is_empty());
}

#[test]
fn a_relist_of_gated_pods_replaces_the_set() {
    let mut index = shop();
    index.dispatch(gated("10.0.0.2", true));
    let changes = index.dispatch(Input::GatedPods {
        cluster: idc(),
        ready: Vec::new(),
    });
    assert!(!changes.is_empty());
    assert_eq!(active(&index), ["10.0.0.1"]);
    let changes = index.dispatch(Input::GatedPods {
        cluster: idc(),
        ready: vec!["10.0.0.2".parse().unwrap()],
    });
    assert!(!changes.is_empty());
    assert_eq!(active(&index), ["10.0.0.1", "10.0.0.2"]);
}
