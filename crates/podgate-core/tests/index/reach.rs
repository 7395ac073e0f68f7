//! The routability guard and the `nodeport` target, in the pure Index: what is outside
//! a cluster's routable CIDRs is not registered and is reported on its Service; a
//! `nodeport` cluster contributes its Ready nodes at the Service's nodePort.

use crate::common;

use std::net::IpAddr;

use common::{idc, index, reported, tke};
use podgate_core::index::{EndpointTarget, Index, Input};
use podgate_core::model::{PortRef, UpstreamKey};
use podgate_sim::objects::{ingress, service, slice};

fn web() -> UpstreamKey {
    UpstreamKey::new("shop", "web", PortRef::Number(80))
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// shop/web:80 routed, Service port 80 `http` (nodePort 30080) in both clusters; idc
/// pods 10.0.0.1 and 192.168.0.1, tke pod 10.1.0.1.
fn shop() -> Index {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    for c in [idc(), tke()] {
        index.apply(&c, service("shop", "web").node_port("http", 80, 30080));
    }
    index.apply(
        &idc(),
        slice("shop", "web-idc", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .ready("192.168.0.1"),
    );
    index.apply(
        &tke(),
        slice("shop", "web-tke", "web")
            .port("http", 8080)
            .ready("10.1.0.1"),
    );
    index
}

/// `cluster address:port` of each endpoint of shop/web:80.
fn registered(index: &Index) -> Vec<String> {
    index.upstream(&web()).map_or_else(Vec::new, |u| {
        u.endpoints
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.cluster,
                    std::net::SocketAddr::new(e.address, e.port)
                )
            })
            .collect()
    })
}

#[test]
fn without_a_guard_everything_is_registered() {
    let index = shop();
    assert_eq!(
        registered(&index),
        [
            "idc 10.0.0.1:8080",
            "idc 192.168.0.1:8080",
            "tke 10.1.0.1:8080"
        ]
    );
    assert!(reported(&index, "UnroutableEndpoint").is_empty());
}

#[test]
fn endpoints_outside_routable_cidrs_are_left_out_and_reported() {
    let mut index = shop();
    let changes = index.dispatch(Input::Routable {
        cluster: idc(),
        routable: Some(nets(&["10.0.0.0/16"])),
    });
    assert!(changes.upstreams.contains(&web()));
    assert!(changes.diagnostics);
    assert_eq!(
        registered(&index),
        ["idc 10.0.0.1:8080", "tke 10.1.0.1:8080"]
    );
    let reports: Vec<_> = index
        .diagnostics()
        .into_iter()
        .filter(|r| r.diagnostic.reason == "UnroutableEndpoint")
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].object.to_string(), "idc: Service shop/web");
    assert!(reports[0].diagnostic.message.contains("192.168.0.1"));
    // The same guard again changes nothing.
    assert!(
        index
            .dispatch(Input::Routable {
                cluster: idc(),
                routable: Some(nets(&["10.0.0.0/16"]))
            })
            .is_empty()
    );
}

#[test]
fn the_guard_follows_changes_and_can_be_lifted() {
    let mut index = shop();
    index.dispatch(Input::Routable {
        cluster: idc(),
        routable: Some(nets(&["192.168.0.0/24"])),
    });
    assert_eq!(
        registered(&index),
        ["idc 192.168.0.1:8080", "tke 10.1.0.1:8080"]
    );
    // Dual stack and several subnets: any one containing the address will do.
    index.dispatch(Input::Routable {
        cluster: idc(),
        routable: Some(nets(&["fd00::/64", "10.0.0.0/24", "192.168.0.0/24"])),
    });
    assert_eq!(registered(&index).len(), 3);
    index.dispatch(Input::Routable {
        cluster: idc(),
        routable: None,
    });
    assert_eq!(registered(&index).len(), 3);
    assert!(reported(&index, "UnroutableEndpoint").is_empty());
}

#[test]
fn nothing_known_routable_registers_nothing_and_fails_over() {
    let mut index = shop();
    // kube-ovn Subnets not listed yet: unknown is not "everything".
    index.dispatch(Input::Routable {
        cluster: idc(),
        routable: Some(Vec::new()),
    });
    assert_eq!(registered(&index), ["tke 10.1.0.1:8080"]);
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.shares, [(tke(), 1000)]);
    assert_eq!(reported(&index, "UnroutableEndpoint"), ["shop/web"]);
}

#[test]
fn a_slice_arriving_later_is_filtered_too() {
    let mut index = shop();
    index.dispatch(Input::Routable {
        cluster: tke(),
        routable: Some(nets(&["10.1.0.0/16"])),
    });
    let changes = index.apply(
        &tke(),
        slice("shop", "web-tke", "web")
            .port("http", 8080)
            .ready("10.1.0.1")
            .ready("172.16.0.9"),
    );
    // No upstream changed, but there is something new to report (Events recompute
    // diagnostics only when told so).
    assert!(changes.upstreams.is_empty());
    assert!(changes.diagnostics);
    assert_eq!(
        registered(&index)
            .iter()
            .filter(|e| e.starts_with("tke"))
            .count(),
        1
    );
    assert_eq!(reported(&index, "UnroutableEndpoint"), ["shop/web"]);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn nodeport_target_registers_ready_nodes_at_the_node_port() {
    let mut index = shop();
    index.dispatch(Input::Target {
        cluster: tke(),
        target: EndpointTarget::NodePort,
    });
    // No Ready node known yet: tke contributes nothing.
    assert_eq!(
        registered(&index),
        ["idc 10.0.0.1:8080", "idc 192.168.0.1:8080"]
    );
    let changes = index.dispatch(Input::Nodes {
        cluster: tke(),
        nodes: [
            ("node-b".into(), ip("10.9.0.2")),
            ("node-a".into(), ip("10.9.0.1")),
        ]
        .to_vec(),
    });
    assert!(changes.upstreams.contains(&web()));
    let up = index.upstream(&web()).unwrap();
    let tke_eps: Vec<_> = up.endpoints.iter().filter(|e| e.cluster == tke()).collect();
    assert_eq!(tke_eps.len(), 2);
    assert_eq!(tke_eps[0].address, ip("10.9.0.1"));
    assert_eq!(tke_eps[0].port, 30080);
    assert_eq!(tke_eps[0].node.as_deref(), Some("node-a"));
    // The cluster's share is split over its nodes.
    assert_eq!(tke_eps[0].weight + tke_eps[1].weight, 500 * 1000);
    // A node goes away.
    index.dispatch(Input::Nodes {
        cluster: tke(),
        nodes: [("node-b".into(), ip("10.9.0.2"))].to_vec(),
    });
    assert_eq!(
        registered(&index)
            .iter()
            .filter(|e| e.starts_with("tke"))
            .collect::<Vec<_>>(),
        ["tke 10.9.0.2:30080"]
    );
}

#[test]
fn nodeport_cluster_without_active_pods_gives_its_share_away() {
    let mut index = shop();
    index.dispatch(Input::Target {
        cluster: tke(),
        target: EndpointTarget::NodePort,
    });
    index.dispatch(Input::Nodes {
        cluster: tke(),
        nodes: [("node-a".into(), ip("10.9.0.1"))].to_vec(),
    });
    index.apply(&tke(), slice("shop", "web-tke", "web").port("http", 8080));
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.shares, [(idc(), 1000)]);
    assert!(up.endpoints.iter().all(|e| e.cluster == idc()));
}

#[test]
fn nodeport_guard_applies_to_node_addresses_and_missing_node_port_is_reported() {
    let mut index = shop();
    index.dispatch(Input::Target {
        cluster: tke(),
        target: EndpointTarget::NodePort,
    });
    index.dispatch(Input::Routable {
        cluster: tke(),
        routable: Some(nets(&["10.9.0.0/24"])),
    });
    index.dispatch(Input::Nodes {
        cluster: tke(),
        nodes: [("a".into(), ip("10.9.0.1")), ("b".into(), ip("172.16.0.1"))].to_vec(),
    });
    let tke_eps: Vec<String> = registered(&index)
        .into_iter()
        .filter(|e| e.starts_with("tke"))
        .collect();
    assert_eq!(tke_eps, ["tke 10.9.0.1:30080"]);
    assert_eq!(reported(&index, "UnroutableEndpoint"), ["shop/web"]);
    // A Service without nodePort: nothing from tke, and said so.
    index.apply(&tke(), service("shop", "web").port("http", 80));
    assert!(registered(&index).iter().all(|e| e.starts_with("idc")));
    assert_eq!(reported(&index, "NoNodePort"), ["shop/web"]);
}
