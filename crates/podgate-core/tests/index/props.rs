//! Property: whatever the order of events, the Index ends in the state that applying
//! only the final objects once would give.

use crate::common;

use common::{CONTROLLER, idc, tke};
use podgate_core::index::{Index, IndexConfig, Input, Kind, Object};
use podgate_core::model::ClusterName;
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A small universe of objects, each with a few versions that interact: conflicts,
/// shared addresses across slices, renamed ports, class flips, weights.
fn version(id: usize, v: usize) -> Object {
    match (id, v % 3) {
        (0, 0) => ingress("shop", "a")
            .created(100)
            .route("shop.com", "Prefix", "/", "web", 80)
            .into(),
        (0, 1) => ingress("shop", "a")
            .created(100)
            .route("shop.com", "Exact", "/api", "api", "http")
            .default_backend("web", 80)
            .into(),
        (0, _) => ingress("shop", "a")
            .class("other")
            .route("shop.com", "Prefix", "/", "web", 80)
            .into(),
        (1, 0) => ingress("shop", "b")
            .created(50)
            .route("shop.com", "Prefix", "/", "api", "http")
            .into(),
        (1, 1) => ingress("shop", "b")
            .created(50)
            .route("*.shop.com", "Prefix", "/x", "web", 80)
            .into(),
        (1, _) => ingress("shop", "b")
            .created(150)
            .annotate("podgate.io/cluster-weights", "idc=1,tke=3")
            .route("shop.com", "Prefix", "/", "web", 80)
            .into(),
        (2, 0) => service("shop", "web").port("http", 80).into(),
        (2, 1) => service("shop", "web")
            .port("web", 80)
            .annotate("podgate.io/cluster-weights", "idc=9,tke=1")
            .into(),
        (2, _) => service("shop", "web").port("", 80).into(),
        (3, 0) => service("shop", "api").port("http", 8080).into(),
        (3, _) => service("shop", "api").port("http", 80).into(),
        (4, 0) => slice("shop", "web-1", "web")
            .port("http", 8080)
            .ready("10.0.0.1")
            .terminating("10.0.0.2")
            .into(),
        (4, 1) => slice("shop", "web-1", "web")
            .port("web", 8081)
            .ready("10.0.0.3")
            .into(),
        (4, _) => slice("shop", "web-1", "api")
            .port("http", 9000)
            .ready("10.0.0.1")
            .into(),
        (5, 0) => slice("shop", "web-2", "web")
            .port("http", 8080)
            .ready("10.0.0.2")
            .into(),
        (5, 1) => slice("shop", "web-2", "web")
            .port("", 8080)
            .not_ready("10.0.0.1")
            .into(),
        (5, _) => slice("shop", "web-2", "web")
            .port("http", 8080)
            .terminating("10.0.0.1")
            .into(),
        (6, 0) => default_class(ingress_class("podgate", CONTROLLER)).into(),
        (6, 1) => ingress_class("podgate", CONTROLLER).into(),
        (6, _) => ingress_class("podgate", "example.com/another-controller").into(),
        (7, v) => http_route(v).into(),
        (8, v) => gateway(v).into(),
        (_, v) => {
            let controller = if v == 2 {
                "example.com/another-controller"
            } else {
                podgate_core::gateway::DEFAULT_CONTROLLER_NAME
            };
            let class: podgate_core::gateway::GatewayClass = serde_json::from_value(
                serde_json::json!({"metadata": {"name": "podgate"}, "spec": {"controllerName": controller}}),
            )
            .unwrap();
            class.into()
        }
    }
}

/// An HTTPRoute on the Ingresses' host: to `web`, to `api` by a header with a split,
/// or to a Service that does not exist.
fn http_route(v: usize) -> podgate_core::gateway::HttpRoute {
    let rules = match v % 3 {
        0 => serde_json::json!([{"backendRefs": [{"name": "web", "port": 80}]}]),
        1 => serde_json::json!([
            {"matches": [{"headers": [{"name": "x", "value": "1"}]}],
             "backendRefs": [{"name": "api", "port": 80, "weight": 3}, {"name": "web", "port": 80}]},
        ]),
        _ => serde_json::json!([{"backendRefs": [{"name": "gone", "port": 80}]}]),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "shop", "name": "r", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.com"], "rules": rules},
    }))
    .unwrap()
}

/// A Gateway of podgate's class: a listener for the host, for any host, or of another
/// class.
fn gateway(v: usize) -> podgate_core::gateway::Gateway {
    let (class, listener) = match v % 3 {
        0 => (
            "podgate",
            serde_json::json!({"name": "a", "port": 80, "protocol": "HTTP", "hostname": "shop.com"}),
        ),
        1 => (
            "podgate",
            serde_json::json!({"name": "a", "port": 80, "protocol": "HTTP"}),
        ),
        _ => (
            "other",
            serde_json::json!({"name": "a", "port": 80, "protocol": "HTTP"}),
        ),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "shop", "name": "gw"},
        "spec": {"gatewayClassName": class, "listeners": [listener]},
    }))
    .unwrap()
}

const IDS: usize = 10;

fn kind_and_name(id: usize) -> (Kind, &'static str, &'static str) {
    match id {
        0 => (Kind::Ingress, "shop", "a"),
        1 => (Kind::Ingress, "shop", "b"),
        2 => (Kind::Service, "shop", "web"),
        3 => (Kind::Service, "shop", "api"),
        4 => (Kind::EndpointSlice, "shop", "web-1"),
        5 => (Kind::EndpointSlice, "shop", "web-2"),
        6 => (Kind::IngressClass, "", "podgate"),
        7 => (Kind::HTTPRoute, "shop", "r"),
        8 => (Kind::Gateway, "shop", "gw"),
        _ => (Kind::GatewayClass, "", "podgate"),
    }
}

#[derive(Clone, Debug)]
enum Event {
    Apply {
        cluster: bool,
        id: usize,
        version: usize,
    },
    Delete {
        cluster: bool,
        id: usize,
    },
    Relist {
        cluster: bool,
        id: usize,
        version: Option<usize>,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (any::<bool>(), 0..IDS, 0..3usize).prop_map(|(cluster, id, version)| Event::Apply { cluster, id, version }),
        2 => (any::<bool>(), 0..IDS).prop_map(|(cluster, id)| Event::Delete { cluster, id }),
        1 => (any::<bool>(), 0..IDS, proptest::option::of(0..3usize)).prop_map(|(cluster, id, version)| Event::Relist { cluster, id, version }),
    ]
}

fn cluster(b: bool) -> ClusterName {
    if b { tke() } else { idc() }
}

fn new_index() -> Index {
    Index::new(IndexConfig {
        clusters: vec![(idc(), 100), (tke(), 100)],
        ..IndexConfig::default()
    })
}

/// Everything observable: routes, upstreams, certificates, diagnostics, and the
/// Gateway API status of each cluster.
fn observe(index: &Index) -> String {
    let s = index.snapshot();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.route_table(),
        s.upstream_list(),
        s.certificates,
        index.diagnostics(),
        index.gateway_resolution(&idc()),
        index.gateway_resolution(&tke()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_event_order_ends_in_the_final_state(events in proptest::collection::vec(event(), 1..40)) {
        // The events as the Index's inputs, and the final version of each (cluster,
        // id); None = absent.
        let mut inputs: Vec<Input> = Vec::new();
        let mut last: BTreeMap<(bool, usize), Option<usize>> = BTreeMap::new();
        for e in &events {
            match *e {
                Event::Apply { cluster: c, id, version: v } => {
                    inputs.push(Input::Apply { cluster: cluster(c), object: version(id, v) });
                    last.insert((c, id), Some(v));
                }
                Event::Delete { cluster: c, id } => {
                    let (kind, ns, name) = kind_and_name(id);
                    inputs.push(Input::Delete { cluster: cluster(c), kind, namespace: ns.into(), name: name.into() });
                    last.insert((c, id), None);
                }
                Event::Relist { cluster: c, id, version: v } => {
                    // A relist of this object's kind in which it alone has this version;
                    // the other objects of the kind keep their current version.
                    let (kind, ..) = kind_and_name(id);
                    last.insert((c, id), v);
                    let objects: Vec<Object> = (0..IDS)
                        .filter(|other| kind_and_name(*other).0 == kind)
                        .filter_map(|other| last.get(&(c, other)).copied().flatten().map(|v| version(other, v)))
                        .collect();
                    inputs.push(Input::Reset { cluster: cluster(c), kind, objects });
                }
            }
        }
        let mut index = new_index();
        for input in inputs {
            index.dispatch(input);
        }
        // The same final objects, applied once each, in two different orders.
        let finals: Vec<(bool, Object)> = last.iter().filter_map(|(&(c, id), v)| v.map(|v| (c, version(id, v)))).collect();
        let mut forward = new_index();
        for (c, o) in &finals {
            forward.apply(&cluster(*c), o.clone());
        }
        let mut backward = new_index();
        for (c, o) in finals.iter().rev() {
            backward.apply(&cluster(*c), o.clone());
        }
        let want = observe(&forward);
        prop_assert_eq!(&observe(&backward), &want);
        prop_assert_eq!(&observe(&index), &want);
    }
}
