//! References across namespaces need a ReferenceGrant in the target's namespace:
//! backendRefs to Services, and certificateRefs to Secrets.

use podgate_core::gateway::ReferenceGrant;
use serde_json::json;

use super::common::{Cluster, condition, http, parent, route};

fn grant(
    namespace: &str,
    from_kind: &str,
    from_ns: &str,
    to_kind: &str,
    name: Option<&str>,
) -> ReferenceGrant {
    let group = if from_kind == "Gateway" || from_kind == "HTTPRoute" {
        "gateway.networking.k8s.io"
    } else {
        ""
    };
    let mut to = json!({"group": "", "kind": to_kind});
    if let Some(n) = name {
        to["name"] = json!(n);
    }
    serde_json::from_value(json!({
        "metadata": {"namespace": namespace, "name": "grant"},
        "spec": {"from": [{"group": group, "kind": from_kind, "namespace": from_ns}], "to": [to]},
    }))
    .unwrap()
}

fn cross_namespace_route() -> serde_json::Value {
    json!({
        "parentRefs": [{"name": "gw"}],
        "rules": [{"backendRefs": [{"name": "shop", "namespace": "shop", "port": 80}]}],
    })
}

#[test]
fn a_backend_in_another_namespace_needs_a_grant_naming_the_route_kind_and_namespace() {
    let cases: [(&str, Option<ReferenceGrant>, (&str, &str)); 5] = [
        ("no grant", None, ("False", "RefNotPermitted")),
        (
            "grant",
            Some(grant("shop", "HTTPRoute", "default", "Service", None)),
            ("True", "ResolvedRefs"),
        ),
        (
            "grant by name",
            Some(grant(
                "shop",
                "HTTPRoute",
                "default",
                "Service",
                Some("shop"),
            )),
            ("True", "ResolvedRefs"),
        ),
        (
            "other name",
            Some(grant(
                "shop",
                "HTTPRoute",
                "default",
                "Service",
                Some("cart"),
            )),
            ("False", "RefNotPermitted"),
        ),
        (
            "other namespace",
            Some(grant("shop", "HTTPRoute", "team-b", "Service", None)),
            ("False", "RefNotPermitted"),
        ),
    ];
    for (what, g, expected) in cases {
        let mut c = Cluster::with_gateway(json!([http("a", 80)]));
        c.add_service("shop", "shop");
        c.grants.extend(g);
        c.route(route("default", "web", 1, cross_namespace_route()));
        let r = c.resolve();
        let p = parent(&r, "default", "web");
        assert_eq!(condition(p, "ResolvedRefs"), expected, "{what}");
        // Refused references stay Accepted: their share answers 500.
        assert_eq!(condition(p, "Accepted"), ("True", "Accepted"), "{what}");
        let backend = &r.attachments[0].rule.backends[0];
        assert_eq!(backend.problem.is_none(), expected.0 == "True", "{what}");
    }
    // A grant in the route's namespace instead of the Service's does not count.
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.add_service("shop", "shop");
    c.grants
        .push(grant("default", "HTTPRoute", "default", "Service", None));
    c.route(route("default", "web", 1, cross_namespace_route()));
    let r = c.resolve();
    assert_eq!(
        condition(parent(&r, "default", "web"), "ResolvedRefs"),
        ("False", "RefNotPermitted")
    );
}

#[test]
fn a_certificate_in_another_namespace_needs_a_grant_from_the_gateway() {
    let listener = json!([{"name": "https", "port": 443, "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "wildcard", "namespace": "certs"}]}}]);
    for (g, programmed) in [
        (None, ("False", "RefNotPermitted")),
        (
            Some(grant(
                "certs",
                "Gateway",
                "default",
                "Secret",
                Some("wildcard"),
            )),
            ("True", "ResolvedRefs"),
        ),
    ] {
        let mut c = Cluster::with_gateway(listener.clone());
        c.secrets
            .insert(("certs".to_owned(), "wildcard".to_owned()));
        c.grants.extend(g);
        c.route(route(
            "default",
            "web",
            1,
            json!({"parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
        ));
        let r = c.resolve();
        let l = &r.gateways[&("default".to_owned(), "gw".to_owned())].listeners[0];
        let resolved = l
            .conditions
            .iter()
            .find(|c| c.kind == "ResolvedRefs")
            .unwrap();
        assert_eq!((resolved.status, resolved.reason), programmed);
        let served: Vec<_> = r
            .attachments
            .iter()
            .map(|a| a.certificates.clone())
            .collect();
        if programmed.0 == "True" {
            assert_eq!(served, [vec![("certs".to_owned(), "wildcard".to_owned())]]);
        } else {
            assert!(served.is_empty(), "{served:?}");
        }
    }
}
