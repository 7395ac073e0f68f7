//! Hosts, classes, default backends, conflicts and TLS.

use crate::common;

use common::{CONTROLLER, idc, index, reported, route, tke};
use podgate_core::index::{Index, IndexConfig, Kind, LEGACY_CLASS_ANNOTATION, RouteScope};
use podgate_core::model::HostPattern;
use podgate_sim::objects::{ingress, ingress_class, service, tls_secret};

fn host(h: &str) -> RouteScope {
    RouteScope::Host(HostPattern::parse(h).unwrap())
}

#[test]
fn wildcard_hosts_match_one_label_and_exact_beats_wildcard() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "wild").route("*.foo.com", "Prefix", "/", "wild", 80),
    );
    index.apply(
        &idc(),
        ingress("ns", "exact").route("bar.foo.com", "Prefix", "/", "exact", 80),
    );
    let t = index.snapshot().route_table();
    assert_eq!(route(&t, "bar.foo.com", "/"), "ns/exact:80");
    assert_eq!(route(&t, "baz.foo.com", "/"), "ns/wild:80");
    assert_eq!(route(&t, "baz.bar.foo.com", "/"), "-");
    assert_eq!(route(&t, "foo.com", "/"), "-");
}

#[test]
fn hosts_are_case_insensitive_and_ignore_the_port() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "a").route("Foo.Example.com", "Prefix", "/", "a", 80),
    );
    let t = index.snapshot().route_table();
    let request_host = podgate_core::model::normalize_request_host("FOO.example.COM:8443");
    assert_eq!(route(&t, &request_host, "/x"), "ns/a:80");
}

#[test]
fn rules_without_host_serve_unknown_hosts_only() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "any").route("", "Prefix", "/", "any", 80),
    );
    index.apply(
        &idc(),
        ingress("ns", "foo").route("foo.com", "Prefix", "/api", "foo", 80),
    );
    let t = index.snapshot().route_table();
    assert_eq!(route(&t, "other.com", "/x"), "ns/any:80");
    assert_eq!(route(&t, "foo.com", "/api"), "ns/foo:80");
    assert_eq!(
        route(&t, "foo.com", "/x"),
        "-",
        "a named host does not fall through to host-less rules"
    );
}

#[test]
fn default_backend_serves_unmatched_paths_and_unknown_hosts() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "app")
            .route("foo.com", "Exact", "/a", "a", 80)
            .default_backend("fallback", 80),
    );
    index.apply(
        &idc(),
        ingress("ns", "catchall")
            .created(10)
            .default_backend("catchall", 8080),
    );
    let t = index.snapshot().route_table();
    assert_eq!(route(&t, "foo.com", "/a"), "ns/a:80");
    assert_eq!(route(&t, "foo.com", "/b"), "ns/fallback:80");
    assert_eq!(route(&t, "nobody.com", "/"), "ns/catchall:8080");
}

#[test]
fn class_selection() {
    let mut index = index();
    let c = idc();
    index.apply(
        &c,
        ingress("ns", "named")
            .class("podgate")
            .route("a.com", "Prefix", "/", "a", 80),
    );
    index.apply(
        &c,
        ingress("ns", "other")
            .class("nginx")
            .route("b.com", "Prefix", "/", "b", 80),
    );
    index.apply(
        &c,
        ingress("ns", "unknown-class")
            .class("nope")
            .route("c.com", "Prefix", "/", "c", 80),
    );
    index.apply(
        &c,
        ingress("ns", "no-class").route("d.com", "Prefix", "/", "d", 80),
    );
    index.apply(
        &c,
        ingress("ns", "legacy")
            .annotate(LEGACY_CLASS_ANNOTATION, "podgate")
            .route("e.com", "Prefix", "/", "e", 80),
    );
    index.apply(
        &c,
        ingress("ns", "legacy-other")
            .annotate(LEGACY_CLASS_ANNOTATION, "nginx")
            .route("f.com", "Prefix", "/", "f", 80),
    );
    let t = index.snapshot().route_table();
    let served: Vec<&str> = t.hosts.keys().map(HostPattern::as_str).collect();
    assert_eq!(served, ["a.com", "d.com", "e.com"]);
}

#[test]
fn without_a_default_class_classless_ingresses_are_ignored_and_class_changes_apply() {
    let c = idc();
    let mut index = Index::new(IndexConfig::default());
    index.apply(
        &c,
        ingress("ns", "no-class").route("d.com", "Prefix", "/", "d", 80),
    );
    index.apply(
        &c,
        ingress("ns", "named")
            .class("pg")
            .route("a.com", "Prefix", "/", "a", 80),
    );
    assert!(index.snapshot().route_table().hosts.is_empty());
    // The class arrives after the Ingress: the Ingress is picked up.
    let changes = index.apply(&c, ingress_class("pg", CONTROLLER));
    assert_eq!(
        changes.routes.into_iter().collect::<Vec<_>>(),
        [host("a.com")]
    );
    // And leaves again when the class is deleted.
    let changes = index.delete(&c, Kind::IngressClass, "", "pg");
    assert_eq!(
        changes.routes.into_iter().collect::<Vec<_>>(),
        [host("a.com")]
    );
    assert!(index.snapshot().route_table().hosts.is_empty());
}

#[test]
fn conflicts_go_to_the_oldest_ingress_in_any_event_order() {
    let older = ingress("team-b", "old")
        .created(100)
        .route("shop.com", "Prefix", "/", "old", 80);
    let newer = ingress("team-a", "new")
        .created(200)
        .route("shop.com", "Prefix", "/", "new", 80);
    for order in [
        [older.0.clone(), newer.0.clone()],
        [newer.0.clone(), older.0.clone()],
    ] {
        let mut index = index();
        for ing in order {
            index.apply(&idc(), ing);
        }
        let t = index.snapshot().route_table();
        assert_eq!(route(&t, "shop.com", "/"), "team-b/old:80");
        assert_eq!(reported(&index, "HostConflict"), ["team-a/new"]);
    }
    // Equal creation times: namespace/name decides.
    let mut index = index();
    index.apply(
        &idc(),
        ingress("b", "x")
            .created(5)
            .route("t.com", "Prefix", "/", "b", 80),
    );
    index.apply(
        &idc(),
        ingress("a", "x")
            .created(5)
            .route("t.com", "Prefix", "/", "a", 80),
    );
    assert_eq!(
        route(&index.snapshot().route_table(), "t.com", "/"),
        "a/a:80"
    );
    // The winner goes away: the other takes over and the conflict is gone.
    index.delete(&idc(), Kind::Ingress, "a", "x");
    assert_eq!(
        route(&index.snapshot().route_table(), "t.com", "/"),
        "b/b:80"
    );
    assert!(reported(&index, "HostConflict").is_empty());
}

#[test]
fn the_same_ingress_in_two_clusters_is_not_a_conflict() {
    let mut index = index();
    let ing = ingress("shop", "web")
        .created(1)
        .route("shop.com", "Prefix", "/", "web", 80);
    index.apply(&idc(), ing.0.clone());
    index.apply(&tke(), ing);
    assert!(reported(&index, "HostConflict").is_empty());
    // Deleting it from one cluster keeps the route.
    let changes = index.delete(&idc(), Kind::Ingress, "shop", "web");
    assert!(changes.routes.is_empty(), "{changes:?}");
    assert_eq!(
        route(&index.snapshot().route_table(), "shop.com", "/"),
        "shop/web:80"
    );
}

#[test]
fn resource_backends_are_refused_with_a_diagnostic() {
    let mut index = index();
    let mut ing = ingress("ns", "res")
        .route("r.com", "Prefix", "/ok", "ok", 80)
        .build();
    let path = &mut ing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths;
    let mut res = path[0].clone();
    res.path = Some("/bucket".into());
    res.backend.service = None;
    res.backend.resource = Some(k8s_openapi::api::core::v1::TypedLocalObjectReference {
        api_group: Some("k8s.example.com".into()),
        kind: "StorageBucket".into(),
        name: "static".into(),
    });
    path.push(res);
    index.apply(&idc(), ing);
    let t = index.snapshot().route_table();
    assert_eq!(route(&t, "r.com", "/ok"), "ns/ok:80");
    assert_eq!(route(&t, "r.com", "/bucket"), "-");
    let reasons: Vec<_> = index
        .diagnostics()
        .iter()
        .map(|r| r.diagnostic.reason)
        .collect();
    assert!(reasons.contains(&"ResourceBackend"), "{reasons:?}");
}

#[test]
fn unknown_service_and_port_are_reported() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "i")
            .route("a.com", "Prefix", "/", "ghost", 80)
            .route("a.com", "Prefix", "/x", "web", "metrics"),
    );
    index.apply(&idc(), service("ns", "web").port("http", 80));
    let reasons: Vec<_> = index
        .diagnostics()
        .iter()
        .map(|r| r.diagnostic.reason)
        .collect();
    assert_eq!(reasons, ["UnknownService", "UnknownServicePort"]);
}

fn cert(host: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

#[test]
fn tls_hosts_use_their_secret_and_a_bad_secret_disables_only_those_hosts() {
    let mut index = index();
    let (crt, key) = cert("a.com");
    index.apply(&idc(), tls_secret("ns", "a-tls", &crt, &key));
    index.apply(&idc(), tls_secret("ns", "b-tls", "not a cert", "not a key"));
    index.apply(
        &idc(),
        ingress("ns", "i")
            .route("a.com", "Prefix", "/", "a", 80)
            .route("b.com", "Prefix", "/", "b", 80)
            .tls(&["a.com"], "a-tls")
            .tls(&["b.com"], "b-tls"),
    );
    let snap = index.snapshot();
    let t = snap.route_table();
    assert_eq!(
        t.hosts[&HostPattern::parse("a.com").unwrap()]
            .tls
            .as_deref(),
        Some("ns/a-tls")
    );
    assert_eq!(t.hosts[&HostPattern::parse("b.com").unwrap()].tls, None);
    assert_eq!(route(&t, "b.com", "/"), "ns/b:80", "routing stays");
    assert_eq!(snap.certificates.keys().collect::<Vec<_>>(), ["ns/a-tls"]);
    assert_eq!(reported(&index, "BadTlsSecret"), ["ns/i"]);
    let reports = index.diagnostics();
    assert!(
        !format!("{reports:?}").contains("PRIVATE KEY"),
        "never print key material"
    );
    assert!(!format!("{:?}", snap.certificates).contains("PRIVATE KEY"));

    // The Secret is fixed: TLS comes on for b.com, reported as a route and cert change.
    let (crt, key) = cert("b.com");
    let changes = index.apply(&idc(), tls_secret("ns", "b-tls", &crt, &key));
    assert_eq!(
        changes.routes.into_iter().collect::<Vec<_>>(),
        [host("b.com")]
    );
    assert_eq!(
        changes.certificates.into_iter().collect::<Vec<_>>(),
        ["ns/b-tls"]
    );
    // Deleting the Ingress removes both certificates.
    let changes = index.delete(&idc(), Kind::Ingress, "ns", "i");
    assert_eq!(changes.certificates.len(), 2);
    assert!(index.snapshot().certificates.is_empty());
}

#[test]
fn the_claimants_of_a_contested_rule_name_the_oldest_first() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "newer")
            .created(200)
            .route("shop.com", "Prefix", "/api", "b", 80),
    );
    index.apply(
        &tke(),
        ingress("ns", "older")
            .created(100)
            .route("shop.com", "Prefix", "/api", "a", 80),
    );
    let api = podgate_core::model::PathMatch::prefix("/api");
    assert_eq!(
        index.route_claimants(&host("shop.com"), Some(&api)),
        ["ns/older in tke", "ns/newer in idc"]
    );
    assert!(index.route_claimants(&host("shop.com"), None).is_empty());
    assert!(
        index
            .route_claimants(&host("other.com"), Some(&api))
            .is_empty()
    );
    let t = index.snapshot().route_table();
    assert_eq!(route(&t, "shop.com", "/api"), "ns/a:80");
}
