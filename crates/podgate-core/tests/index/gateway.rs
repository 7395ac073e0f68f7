//! The Gateway API in the Index: HTTPRoutes become rules on host scopes and upstreams
//! like Ingress backends (one upstream across clusters), an HTTPS listener's
//! certificate reaches the host, and the result does not depend on event order.

use crate::common;

use common::{idc, index, tke};
use podgate_core::gateway::{Gateway, GatewayClass, HttpRoute};
use podgate_core::index::{Index, Kind, Object, RouteScope};
use podgate_core::model::{HostPattern, PortRef, UpstreamKey};
use podgate_sim::objects::{ingress, service, slice, tls_secret};
use serde_json::json;

fn class() -> GatewayClass {
    serde_json::from_value(json!({
        "metadata": {"name": "podgate"},
        "spec": {"controllerName": "podgate.io/gateway-controller"},
    }))
    .unwrap()
}

fn gateway() -> Gateway {
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "gw"},
        "spec": {"gatewayClassName": "podgate", "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "secure.example.com",
             "tls": {"certificateRefs": [{"name": "secure-tls"}]}},
        ]},
    }))
    .unwrap()
}

fn http_route(hostname: &str, created: &str) -> HttpRoute {
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": "web", "creationTimestamp": created},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [hostname],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                              "headers": [{"name": "x-canary", "value": "true"}]}],
                 "backendRefs": [{"name": "api-v2", "port": 80}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "backendRefs": [{"name": "api", "port": 80, "weight": 90},
                                 {"name": "api-v2", "port": 80, "weight": 10}]},
            ],
        },
    }))
    .unwrap()
}

fn key(service: &str) -> UpstreamKey {
    UpstreamKey::new("shop", service, PortRef::Number(80))
}

fn host(h: &str) -> RouteScope {
    RouteScope::Host(HostPattern::parse(h).unwrap())
}

/// A cluster with the Services `api` and `api-v2` (one pod each) and the class.
fn cluster(index: &mut Index, c: &podgate_core::model::ClusterName, third: u8) {
    for (i, svc) in ["api", "api-v2"].into_iter().enumerate() {
        index.apply(c, service("shop", svc).port("http", 80).build());
        let addr = format!("10.{third}.0.{}", i + 1);
        index.apply(
            c,
            slice("shop", &format!("{svc}-1"), svc)
                .port("http", 8080)
                .ready(&addr)
                .build(),
        );
    }
    index.apply(c, class());
}

#[test]
fn an_http_route_becomes_rules_in_precedence_order_and_upstreams_across_clusters() {
    let mut index = index();
    cluster(&mut index, &idc(), 1);
    cluster(&mut index, &tke(), 2);
    for c in [idc(), tke()] {
        index.apply(&c, gateway());
        index.apply(&c, http_route("web.example.com", "2026-01-01T00:00:00Z"));
    }
    let snap = index.snapshot();
    let vhost = snap
        .vhosts
        .get(&host("web.example.com"))
        .expect("the route's host");
    // Namespace sameness: the route seen in both clusters is one route.
    assert_eq!(vhost.rules.len(), 2, "{:?}", vhost.rules);
    assert_eq!(vhost.rules[0].headers.len(), 1, "more headers first");
    let weights: Vec<(Option<String>, u32)> = vhost.rules[1]
        .backends
        .iter()
        .map(|b| (b.upstream.as_ref().map(ToString::to_string), b.weight))
        .collect();
    assert_eq!(
        weights,
        [
            (Some("shop/api:80".to_owned()), 90),
            (Some("shop/api-v2:80".to_owned()), 10)
        ]
    );
    assert_eq!(vhost.rules[1].source, "HTTPRoute shop/web rule 1");
    for svc in ["api", "api-v2"] {
        let up = snap
            .upstreams
            .get(&key(svc))
            .expect("an upstream per backend");
        let clusters: Vec<&str> = up.endpoints.iter().map(|e| e.cluster.as_str()).collect();
        assert_eq!(
            clusters,
            ["idc", "tke"],
            "{svc}: one upstream across clusters"
        );
    }
    let resolution = index.gateway_resolution(&idc()).unwrap();
    let parents = &resolution.routes[&("shop".to_owned(), "web".to_owned())];
    assert!(parents[0].condition("Accepted").unwrap().is_true());

    // Deleting the route in one cluster keeps it; in both, it is gone with its upstreams.
    index.delete(&idc(), Kind::HTTPRoute, "shop", "web");
    assert_eq!(
        index.snapshot().vhosts[&host("web.example.com")]
            .rules
            .len(),
        2
    );
    let changes = index.delete(&tke(), Kind::HTTPRoute, "shop", "web");
    assert!(changes.routes.contains(&host("web.example.com")));
    let snap = index.snapshot();
    assert!(snap.vhosts.get(&host("web.example.com")).is_none());
    assert!(snap.upstreams.get(&key("api")).is_none());
}

#[test]
fn an_ingress_and_an_http_route_share_a_host_rules_first() {
    let mut index = index();
    cluster(&mut index, &idc(), 1);
    index.apply(
        &idc(),
        ingress("shop", "legacy").route("web.example.com", "Prefix", "/", "api", 80),
    );
    index.apply(&idc(), gateway());
    index.apply(
        &idc(),
        http_route("web.example.com", "2026-01-01T00:00:00Z"),
    );
    let snap = index.snapshot();
    let vhost = &snap.vhosts[&host("web.example.com")];
    assert_eq!(vhost.routes.len(), 1);
    assert_eq!(vhost.rules.len(), 2);
    // The Ingress keeps its upstream when the route goes (two owners of one upstream).
    index.delete(&idc(), Kind::HTTPRoute, "shop", "web");
    let snap = index.snapshot();
    assert!(snap.vhosts[&host("web.example.com")].rules.is_empty());
    assert!(snap.upstreams.get(&key("api")).is_some());
    assert!(snap.upstreams.get(&key("api-v2")).is_none());
}

#[test]
fn an_https_listener_serves_its_certificate_once_the_secret_is_valid() {
    let c = rcgen::generate_simple_self_signed(vec!["secure.example.com".to_owned()]).unwrap();
    let (crt, key_pem) = (c.cert.pem(), c.signing_key.serialize_pem());
    let mut index = index();
    cluster(&mut index, &idc(), 1);
    index.apply(&idc(), gateway());
    index.apply(
        &idc(),
        http_route("secure.example.com", "2026-01-01T00:00:00Z"),
    );
    let resolution = index.gateway_resolution(&idc()).unwrap();
    let gw = &resolution.gateways[&("shop".to_owned(), "gw".to_owned())];
    let https = gw.listeners.iter().find(|l| l.name == "https").unwrap();
    assert_eq!(
        https.attached_routes, 0,
        "no certificate yet: not programmed"
    );
    let changes = index.apply(&idc(), tls_secret("shop", "secure-tls", &crt, &key_pem));
    assert!(
        changes.certificates.contains("shop/secure-tls"),
        "{changes:?}"
    );
    let snap = index.snapshot();
    assert_eq!(
        snap.vhosts[&host("secure.example.com")].tls.as_deref(),
        Some("shop/secure-tls")
    );
    assert!(snap.certificates.contains_key("shop/secure-tls"));
}

#[test]
fn the_result_does_not_depend_on_the_order_of_events() {
    let objects: Vec<Object> = vec![
        class().into(),
        gateway().into(),
        http_route("web.example.com", "2026-01-01T00:00:00Z").into(),
        service("shop", "api").port("http", 80).build().into(),
        slice("shop", "api-1", "api")
            .port("http", 8080)
            .ready("10.1.0.1")
            .build()
            .into(),
    ];
    let build = |order: &[usize]| {
        let mut index = index();
        for &i in order {
            index.apply(&idc(), objects[i].clone());
        }
        let snap = index.snapshot();
        (
            snap.route_table(),
            snap.upstreams.get(&key("api")).map(|u| (**u).clone()),
        )
    };
    let reference = build(&[0, 1, 2, 3, 4]);
    assert!(reference.1.is_some());
    for order in [[4, 3, 2, 1, 0], [2, 4, 0, 3, 1], [1, 2, 3, 4, 0]] {
        assert_eq!(build(&order), reference, "{order:?}");
    }
}

#[test]
fn problems_in_gateway_api_status_are_diagnostics_on_their_object() {
    let mut index = index();
    cluster(&mut index, &idc(), 1);
    index.apply(&idc(), gateway());
    let mut route = http_route("web.example.com", "2026-01-01T00:00:00Z");
    route.spec.rules[0].backend_refs[0].reference.name = "gone".to_owned();
    index.apply(&idc(), route);
    let reports = index.diagnostics();
    let on = |kind: Kind| {
        reports
            .iter()
            .filter(|r| r.object.kind == kind)
            .map(|r| {
                (
                    r.object.name.to_string(),
                    r.diagnostic.reason.to_string(),
                    r.diagnostic.message.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let routes = on(Kind::HTTPRoute);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].1, "BackendNotFound");
    assert!(
        routes[0].2.contains("parent Gateway gw") && routes[0].2.contains("shop/gone"),
        "{routes:?}"
    );
    // The HTTPS listener's Secret is missing.
    let gateways = on(Kind::Gateway);
    assert_eq!(gateways.len(), 1, "{gateways:?}");
    assert_eq!(gateways[0].1, "InvalidCertificateRef");
    assert!(gateways[0].2.starts_with("listener https:"), "{gateways:?}");
}

/// Found by the demo: the route written in both clusters names a Service that only
/// tke runs. With namespace sameness it is one upstream, so idc's copy resolves too;
/// judged per cluster, idc's copy sorted first with a 500 for the canary's share.
#[test]
fn a_backend_in_one_cluster_resolves_the_route_in_every_cluster() {
    let mut index = index();
    cluster(&mut index, &tke(), 2);
    index.apply(&idc(), class());
    for c in [idc(), tke()] {
        index.apply(&c, gateway());
        index.apply(&c, http_route("web.example.com", "2026-01-01T00:00:00Z"));
    }
    let snap = index.snapshot();
    let vhost = &snap.vhosts[&host("web.example.com")];
    assert_eq!(
        vhost.rules.len(),
        2,
        "one copy per match: {:?}",
        vhost.rules
    );
    assert!(
        vhost
            .rules
            .iter()
            .all(|r| r.backends.iter().all(|b| b.upstream.is_some())),
        "{:?}",
        vhost.rules
    );
    let idc_status = index.gateway_resolution(&idc()).unwrap();
    let parent = &idc_status.routes[&("shop".to_owned(), "web".to_owned())][0];
    assert!(
        parent.condition("ResolvedRefs").unwrap().is_true(),
        "{parent:?}"
    );
    // A Service appearing in the other cluster resolves a route that named it.
    let mut index = super::common::index();
    index.apply(&idc(), class());
    index.apply(&idc(), gateway());
    index.apply(
        &idc(),
        http_route("web.example.com", "2026-01-01T00:00:00Z"),
    );
    let before = index.gateway_resolution(&idc()).unwrap();
    let parent = &before.routes[&("shop".to_owned(), "web".to_owned())][0];
    assert!(!parent.condition("ResolvedRefs").unwrap().is_true());
    cluster(&mut index, &tke(), 2);
    let after = index.gateway_resolution(&idc()).unwrap();
    let parent = &after.routes[&("shop".to_owned(), "web".to_owned())][0];
    assert!(
        parent.condition("ResolvedRefs").unwrap().is_true(),
        "{parent:?}"
    );
}

#[test]
fn a_listener_admits_routes_of_namespaces_its_selector_matches() {
    let listener = |selector: serde_json::Value| -> Gateway {
        serde_json::from_value(json!({
            "metadata": {"namespace": "infra", "name": "shared"},
            "spec": {"gatewayClassName": "podgate", "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP",
                 "allowedRoutes": {"namespaces": {"from": "Selector", "selector": selector}}},
            ]},
        }))
        .unwrap()
    };
    let namespace = |labels: serde_json::Value| -> k8s_openapi::api::core::v1::Namespace {
        serde_json::from_value(json!({"metadata": {"name": "shop", "labels": labels}})).unwrap()
    };
    let mut route = http_route("web.example.com", "2026-01-01T00:00:00Z");
    route.spec.parent_refs[0].namespace = Some("infra".to_owned());
    route.spec.parent_refs[0].name = "shared".to_owned();
    let mut index = index();
    cluster(&mut index, &idc(), 1);
    index.apply(
        &idc(),
        listener(json!({"matchLabels": {"shared-gateway": "true"}})),
    );
    index.apply(&idc(), route);
    let accepted = |index: &Index| {
        let r = index.gateway_resolution(&idc()).unwrap();
        r.routes[&("shop".to_owned(), "web".to_owned())][0]
            .condition("Accepted")
            .map(|c| c.reason)
    };
    assert_eq!(
        accepted(&index),
        Some("NotAllowedByListeners"),
        "no labels known"
    );
    let changes = index.apply(&idc(), namespace(json!({"shared-gateway": "true"})));
    assert!(
        changes.routes.contains(&host("web.example.com")),
        "{changes:?}"
    );
    assert_eq!(accepted(&index), Some("Accepted"));
    index.apply(&idc(), namespace(json!({"shared-gateway": "false"})));
    assert_eq!(accepted(&index), Some("NotAllowedByListeners"));
    assert!(
        index
            .snapshot()
            .vhosts
            .get(&host("web.example.com"))
            .is_none()
    );
}
