//! Route attachment: parentRefs with sectionName and port, allowedRoutes namespaces
//! and kinds, hostname intersection, and listener and Gateway status.

use std::collections::BTreeMap;

use serde_json::json;

use super::common::{Cluster, class, condition, gateway, hostnames, http, parent, route};

fn web_route(spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "parentRefs": [{"name": "gw"}],
        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
    });
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), spec_extra) {
        spec.extend(extra);
    }
    spec
}

#[test]
fn a_route_attaches_to_the_listeners_its_parent_ref_names_by_section_and_port() {
    let mut c = Cluster::with_gateway(json!([http("a", 80), http("b", 8080)]));
    let cases = [
        ("all", json!({"name": "gw"}), vec!["a", "b"]),
        (
            "section",
            json!({"name": "gw", "sectionName": "b"}),
            vec!["b"],
        ),
        ("port", json!({"name": "gw", "port": 80}), vec!["a"]),
        (
            "both",
            json!({"name": "gw", "sectionName": "a", "port": 80}),
            vec!["a"],
        ),
    ];
    for (i, (name, parent_ref, _)) in cases.iter().enumerate() {
        c.route(route(
            "default",
            name,
            i64::try_from(i).unwrap(),
            web_route(json!({"parentRefs": [parent_ref]})),
        ));
    }
    c.route(route(
        "default",
        "nowhere",
        9,
        web_route(json!({"parentRefs": [{"name": "gw", "sectionName": "a", "port": 8080}]})),
    ));
    let r = c.resolve();
    for (name, _, listeners) in &cases {
        let mut got: Vec<&str> = r
            .attachments
            .iter()
            .filter(|a| a.route.1 == *name)
            .map(|a| a.listener.as_str())
            .collect();
        got.dedup();
        assert_eq!(&got, listeners, "{name}");
        assert_eq!(
            condition(parent(&r, "default", name), "Accepted"),
            ("True", "Accepted")
        );
    }
    assert_eq!(
        condition(parent(&r, "default", "nowhere"), "Accepted"),
        ("False", "NoMatchingParent")
    );
    let status = &r.gateways[&("default".to_owned(), "gw".to_owned())];
    let attached: Vec<(&str, i32)> = status
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.attached_routes))
        .collect();
    assert_eq!(attached, [("a", 3), ("b", 2)]);
    assert_eq!(status.conditions[0].reason, "Accepted");
    assert_eq!(status.conditions[0].observed_generation, 2);
}

#[test]
fn allowed_routes_namespaces_same_all_and_selector() {
    let listeners = json!([
        {"name": "same", "port": 80, "protocol": "HTTP", "hostname": "same.example.com"},
        {"name": "all", "port": 80, "protocol": "HTTP", "hostname": "all.example.com",
         "allowedRoutes": {"namespaces": {"from": "All"}}},
        {"name": "selected", "port": 80, "protocol": "HTTP", "hostname": "sel.example.com",
         "allowedRoutes": {"namespaces": {"from": "Selector",
            "selector": {"matchLabels": {"shared-gateway-access": "true"}}}}},
    ]);
    let mut c = Cluster::with_gateway(listeners);
    c.namespaces.insert(
        "team-a".to_owned(),
        [("shared-gateway-access".to_owned(), "true".to_owned())].into(),
    );
    c.namespaces.insert("team-b".to_owned(), BTreeMap::new());
    for ns in ["default", "team-a", "team-b"] {
        c.add_service(ns, "web");
        c.route(route(
            ns,
            "web",
            1,
            web_route(json!({"parentRefs": [{"name": "gw", "namespace": "default"}]})),
        ));
    }
    let r = c.resolve();
    let host = |h: &str| Some(h.to_owned());
    assert_eq!(
        hostnames(&r, "default", "web"),
        [host("all.example.com"), host("same.example.com")]
    );
    assert_eq!(
        hostnames(&r, "team-a", "web"),
        [host("all.example.com"), host("sel.example.com")]
    );
    assert_eq!(hostnames(&r, "team-b", "web"), [host("all.example.com")]);

    // A namespace no listener admits is told so.
    let mut c = Cluster::with_gateway(json!([http("same", 80)]));
    c.add_service("team-b", "web");
    c.route(route(
        "team-b",
        "web",
        1,
        web_route(json!({"parentRefs": [{"name": "gw", "namespace": "default"}]})),
    ));
    let r = c.resolve();
    assert_eq!(
        condition(parent(&r, "team-b", "web"), "Accepted"),
        ("False", "NotAllowedByListeners")
    );
    assert!(r.attachments.is_empty());
}

#[test]
fn hostnames_intersect_and_a_route_outside_the_listener_is_not_accepted() {
    let listeners = json!([
        {"name": "wild", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
    ]);
    let mut c = Cluster::with_gateway(listeners);
    c.route(route(
        "default",
        "some",
        1,
        web_route(
            json!({"hostnames": ["test.example.com", "test.example.net", "foo.test.example.com"]}),
        ),
    ));
    c.route(route(
        "default",
        "none",
        2,
        web_route(json!({"hostnames": ["example.com"]})),
    ));
    c.route(route("default", "any", 3, web_route(json!({}))));
    let r = c.resolve();
    let host = |h: &str| Some(h.to_owned());
    assert_eq!(
        hostnames(&r, "default", "some"),
        [host("foo.test.example.com"), host("test.example.com")]
    );
    assert_eq!(
        condition(parent(&r, "default", "none"), "Accepted"),
        ("False", "NoMatchingListenerHostname")
    );
    assert_eq!(hostnames(&r, "default", "any"), [host("*.example.com")]);
}

#[test]
fn only_podgates_classes_gateways_and_parents_get_status() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.classes
        .push(class("other", "example.com/other-controller"));
    c.gateways.push(gateway(
        "default",
        "theirs",
        "other",
        json!([http("a", 80)]),
    ));
    c.route(route(
        "default",
        "both",
        1,
        web_route(json!({"parentRefs": [{"name": "gw"}, {"name": "theirs"}, {"name": "missing"}]})),
    ));
    c.route(route(
        "default",
        "theirs-only",
        1,
        web_route(json!({"parentRefs": [{"name": "theirs"}]})),
    ));
    let r = c.resolve();
    assert_eq!(r.classes.keys().collect::<Vec<_>>(), ["podgate"]);
    assert_eq!(r.classes["podgate"].conditions[0].reason, "Accepted");
    assert_eq!(r.gateways.len(), 1);
    let both = parent(&r, "default", "both");
    assert_eq!(both.parent_ref.name, "gw");
    assert_eq!(both.controller_name, "podgate.io/gateway-controller");
    assert!(
        !r.routes
            .contains_key(&("default".to_owned(), "theirs-only".to_owned()))
    );
}

#[test]
fn listeners_podgate_cannot_serve_say_why_and_take_no_routes() {
    let listeners = json!([
        {"name": "tcp", "port": 9000, "protocol": "TCP"},
        {"name": "pass", "port": 443, "protocol": "HTTPS", "tls": {"mode": "Passthrough"}},
        {"name": "nocert", "port": 8443, "protocol": "HTTPS"},
        {"name": "x", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"},
        {"name": "y", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"},
        {"name": "p1", "port": 81, "protocol": "HTTP"},
        {"name": "p2", "port": 81, "protocol": "HTTPS",
         "tls": {"certificateRefs": [{"name": "cert"}]}},
        {"name": "grpc", "port": 82, "protocol": "HTTP",
         "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}},
        {"name": "ok", "port": 83, "protocol": "HTTP"},
    ]);
    let mut c = Cluster::with_gateway(listeners);
    c.secrets.insert(("default".to_owned(), "cert".to_owned()));
    c.route(route("default", "web", 1, web_route(json!({}))));
    let r = c.resolve();
    let status = &r.gateways[&("default".to_owned(), "gw".to_owned())];
    let cond = |listener: &str, kind: &str| {
        let l = status
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .unwrap();
        let c = l.conditions.iter().find(|c| c.kind == kind).unwrap();
        (c.status, c.reason, l.attached_routes)
    };
    assert_eq!(cond("tcp", "Accepted"), ("False", "UnsupportedProtocol", 0));
    assert_eq!(
        cond("pass", "Accepted"),
        ("False", "UnsupportedProtocol", 0)
    );
    assert_eq!(
        cond("nocert", "ResolvedRefs"),
        ("False", "InvalidCertificateRef", 0)
    );
    assert_eq!(cond("x", "Conflicted"), ("True", "HostnameConflict", 0));
    assert_eq!(cond("y", "Programmed"), ("False", "Invalid", 0));
    assert_eq!(cond("p1", "Conflicted"), ("True", "ProtocolConflict", 0));
    assert_eq!(cond("p2", "Conflicted"), ("True", "ProtocolConflict", 0));
    assert_eq!(
        cond("grpc", "ResolvedRefs"),
        ("False", "InvalidRouteKinds", 0)
    );
    assert_eq!(cond("ok", "Programmed"), ("True", "Programmed", 1));
    assert_eq!(
        (status.conditions[0].status, status.conditions[0].reason),
        ("True", "ListenersNotValid")
    );
    let grpc = status.listeners.iter().find(|l| l.name == "grpc").unwrap();
    assert!(grpc.supported_kinds.is_empty());
}
