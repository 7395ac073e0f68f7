//! EndpointSlices → endpoints: conditions, dedupe, ports by name, IPv6, relists, and
//! several clusters merged with weights and failover.

use crate::common;

use common::{idc, index, tke};
use podgate_core::index::{Index, Input, Kind, Object};
use podgate_core::model::{EndpointState, PortRef, UpstreamKey};
use podgate_sim::objects::{ingress, service, slice};

fn web() -> UpstreamKey {
    UpstreamKey::new("shop", "web", PortRef::Number(80))
}

/// shop/web:80 routed for shop.com, Service port 80 named `http`.
fn shop() -> Index {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    for c in [idc(), tke()] {
        index.apply(&c, service("shop", "web").port("http", 80));
    }
    index
}

/// `(cluster, address:port, state, weight)` of each endpoint.
fn endpoints(index: &Index, key: &UpstreamKey) -> Vec<(String, String, EndpointState, u32)> {
    index.upstream(key).map_or_else(Vec::new, |u| {
        u.endpoints
            .iter()
            .map(|e| {
                let addr = std::net::SocketAddr::new(e.address, e.port).to_string();
                (e.cluster.to_string(), addr, e.state, e.weight)
            })
            .collect()
    })
}

#[test]
fn ready_is_active_terminating_is_draining_other_is_absent() {
    let mut index = shop();
    let changes = index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .terminating("10.0.0.2")
            .not_ready("10.0.0.3"),
    );
    assert_eq!(changes.upstreams.into_iter().collect::<Vec<_>>(), [web()]);
    assert!(changes.routes.is_empty());
    let eps = endpoints(&index, &web());
    assert_eq!(
        eps,
        [
            (
                "idc".into(),
                "10.0.0.1:8080".into(),
                EndpointState::Active,
                1_000_000
            ),
            (
                "idc".into(),
                "10.0.0.2:8080".into(),
                EndpointState::Draining,
                0
            ),
        ]
    );
}

#[test]
fn port_resolves_by_number_or_name_through_the_service() {
    let mut index = shop();
    index.apply(
        &idc(),
        ingress("shop", "by-name").route("n.com", "Prefix", "/", "web", "http"),
    );
    index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("metrics", 9090)
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    let by_name = UpstreamKey::new("shop", "web", PortRef::from("http"));
    assert_eq!(endpoints(&index, &web())[0].1, "10.0.0.1:8080");
    assert_eq!(endpoints(&index, &by_name)[0].1, "10.0.0.1:8080");
    // The Service renames its port: neither reference resolves any more.
    index.apply(&idc(), service("shop", "web").port("web", 80));
    assert_eq!(endpoints(&index, &by_name), []);
    let eps = endpoints(&index, &web());
    assert_eq!(eps, [], "slice has no port named `web`");
}

#[test]
fn an_address_in_two_slices_is_registered_once() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .terminating("10.0.0.1")
            .ready("10.0.0.2"),
    );
    index.apply(
        &idc(),
        slice("shop", "web-2", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    let eps = endpoints(&index, &web());
    assert_eq!(eps.len(), 2);
    assert!(
        eps.iter().all(|e| e.2 == EndpointState::Active),
        "Active wins over Draining: {eps:?}"
    );
    // One slice goes: the address stays through the other.
    index.delete(&idc(), Kind::EndpointSlice, "shop", "web-2");
    assert_eq!(endpoints(&index, &web())[0].2, EndpointState::Draining);
}

#[test]
fn fqdn_slices_are_ignored_and_ipv6_works() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-fqdn", "web")
            .address_type("FQDN")
            .port("http", 8080)
            .ready("pod.example.com"),
    );
    assert_eq!(endpoints(&index, &web()), []);
    index.apply(
        &idc(),
        slice("shop", "web-v6", "web")
            .address_type("IPv6")
            .port("http", 8080)
            .ready("fd00::1")
            .at("zone-a", "node-1"),
    );
    assert_eq!(endpoints(&index, &web())[0].1, "[fd00::1]:8080");
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.endpoints[0].zone.as_deref(), Some("zone-a"));
    assert_eq!(up.endpoints[0].node.as_deref(), Some("node-1"));
}

#[test]
fn a_relist_with_the_same_objects_reports_nothing_and_a_changed_one_reports_exactly() {
    let mut index = shop();
    let objects: Vec<Object> = vec![
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .into(),
        slice("shop", "web-2", "web")
            .port("http", 8080)
            .ready("10.0.0.2")
            .into(),
        slice("other", "x-1", "x")
            .port("http", 8080)
            .ready("10.0.9.9")
            .into(),
    ];
    let changes = index.reset(&idc(), Kind::EndpointSlice, &objects);
    assert_eq!(changes.upstreams.len(), 1);
    let generation = index.snapshot().generation;
    let changes = index.reset(&idc(), Kind::EndpointSlice, &objects);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(index.snapshot().generation, generation);
    // A relist missing web-2: exactly web's upstream changes, and only web-2 goes.
    let changes = index.reset(
        &idc(),
        Kind::EndpointSlice,
        &[objects[0].clone(), objects[2].clone()],
    );
    assert_eq!(changes.upstreams.into_iter().collect::<Vec<_>>(), [web()]);
    assert_eq!(endpoints(&index, &web()).len(), 1);
    // A relist of another cluster leaves this one alone.
    assert!(index.reset(&tke(), Kind::EndpointSlice, &[]).is_empty());
    assert_eq!(endpoints(&index, &web()).len(), 1);
}

#[test]
fn two_clusters_merge_into_one_upstream_split_by_weight() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-a", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .ready("10.0.0.2"),
    );
    index.apply(
        &tke(),
        slice("shop", "web-b", "web")
            .port("http", 8080)
            .ready("10.1.0.1"),
    );
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.shares, [(idc(), 500), (tke(), 500)]);
    let eps = endpoints(&index, &web());
    let weights: Vec<u32> = eps.iter().map(|e| e.3).collect();
    assert_eq!(
        weights,
        [250_000, 250_000, 500_000],
        "per-cluster sums follow the shares"
    );

    // The Service annotation overrides the configured weights.
    index.apply(
        &idc(),
        service("shop", "web")
            .port("http", 80)
            .annotate("podgate.io/cluster-weights", "idc=80,tke=20"),
    );
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.shares, [(idc(), 800), (tke(), 200)]);
}

#[test]
fn ingress_annotation_sets_weights_and_run_time_app_weights_beat_it() {
    let mut index = shop();
    index.apply(
        &idc(),
        ingress("shop", "web")
            .annotate("podgate.io/cluster-weights", "idc=30,tke=70")
            .route("shop.com", "Prefix", "/", "web", 80),
    );
    index.apply(
        &idc(),
        slice("shop", "web-a", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    index.apply(
        &tke(),
        slice("shop", "web-b", "web")
            .port("http", 8080)
            .ready("10.1.0.1"),
    );
    assert_eq!(
        index.upstream(&web()).unwrap().shares,
        [(idc(), 300), (tke(), 700)]
    );
    let w = podgate_core::model::shares::ClusterWeights::parse("idc=0,tke=1").unwrap();
    let changes = index.dispatch(Input::AppWeights {
        namespace: "shop".into(),
        service: "web".into(),
        weights: Some(w),
    });
    assert_eq!(changes.upstreams.len(), 1);
    assert_eq!(index.upstream(&web()).unwrap().shares, [(tke(), 1000)]);
    index.dispatch(Input::AppWeights {
        namespace: "shop".into(),
        service: "web".into(),
        weights: None,
    });
    assert_eq!(
        index.upstream(&web()).unwrap().shares,
        [(idc(), 300), (tke(), 700)]
    );
}

#[test]
fn a_cluster_without_active_endpoints_gives_its_share_away() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-a", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    index.apply(
        &tke(),
        slice("shop", "web-b", "web")
            .port("http", 8080)
            .terminating("10.1.0.1"),
    );
    let up = index.upstream(&web()).unwrap();
    assert_eq!(up.shares, [(idc(), 1000)]);
    assert_eq!(
        endpoints(&index, &web())[1].2,
        EndpointState::Draining,
        "still registered to drain"
    );
    // idc scales to zero: tke has only a draining endpoint, nobody has a share.
    index.apply(&idc(), slice("shop", "web-a", "web").port("http", 8080));
    assert!(index.upstream(&web()).unwrap().shares.is_empty());
    // tke recovers.
    index.apply(
        &tke(),
        slice("shop", "web-b", "web")
            .port("http", 8080)
            .ready("10.1.0.2"),
    );
    assert_eq!(index.upstream(&web()).unwrap().shares, [(tke(), 1000)]);
}

#[test]
fn run_time_cluster_weight_changes_every_upstream() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-a", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    index.apply(
        &tke(),
        slice("shop", "web-b", "web")
            .port("http", 8080)
            .ready("10.1.0.1"),
    );
    let changes = index.dispatch(Input::ClusterWeight {
        cluster: idc(),
        weight: 300,
    });
    assert_eq!(changes.upstreams.len(), 1);
    assert_eq!(
        index.upstream(&web()).unwrap().shares,
        [(idc(), 750), (tke(), 250)]
    );
    assert!(
        index
            .dispatch(Input::ClusterWeight {
                cluster: idc(),
                weight: 300
            })
            .is_empty()
    );
}

#[test]
fn a_flip_reports_only_its_upstream() {
    let mut index = shop();
    index.apply(
        &idc(),
        ingress("shop", "api").route("api.com", "Prefix", "/", "api", 80),
    );
    index.apply(&idc(), service("shop", "api").port("", 80));
    index.apply(
        &idc(),
        slice("shop", "api-1", "api")
            .port("", 9000)
            .ready("10.0.1.1"),
    );
    index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    let changes = index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .terminating("10.0.0.1"),
    );
    assert_eq!(changes.upstreams.into_iter().collect::<Vec<_>>(), [web()]);
    assert!(changes.routes.is_empty() && changes.certificates.is_empty());
    let api = UpstreamKey::new("shop", "api", PortRef::Number(80));
    assert_eq!(
        endpoints(&index, &api)[0].1,
        "10.0.1.1:9000",
        "unnamed port"
    );
}

#[test]
fn an_upstream_disappears_with_its_last_ingress() {
    let mut index = shop();
    index.apply(
        &idc(),
        slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1"),
    );
    let changes = index.delete(&idc(), Kind::Ingress, "shop", "web");
    assert_eq!(changes.upstreams.into_iter().collect::<Vec<_>>(), [web()]);
    assert!(index.upstream(&web()).is_none());
    assert!(index.snapshot().route_table().hosts.is_empty());
}
