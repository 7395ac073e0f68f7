//! Rules: backends and their weights, missing Services, and filters podgate cannot
//! serve (refused with a reason, never served differently).

use serde_json::json;

use super::common::{Cluster, condition, http, parent, route};

fn one_rule(rule: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"parentRefs": [{"name": "gw"}]});
    spec["rules"] = serde_json::Value::Array(vec![rule]);
    spec
}

#[test]
fn weights_default_to_one_and_a_missing_service_keeps_its_share_as_a_500() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.route(route(
        "default",
        "web",
        1,
        one_rule(json!({"backendRefs": [
            {"name": "web", "port": 80, "weight": 90},
            {"name": "gone", "port": 80, "weight": 10},
            {"name": "api", "port": 80},
            {"name": "api", "port": 81, "weight": 0},
        ]})),
    ));
    let r = c.resolve();
    let backends = &r.attachments[0].rule.backends;
    let got: Vec<(&str, u32, Option<&str>)> = backends
        .iter()
        .map(|b| {
            (
                b.service.as_str(),
                b.weight,
                b.problem.as_ref().map(|p| p.0),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("web", 90, None),
            ("gone", 10, Some("BackendNotFound")),
            ("api", 1, None),
            ("api", 0, None)
        ]
    );
    let p = parent(&r, "default", "web");
    assert_eq!(condition(p, "ResolvedRefs"), ("False", "BackendNotFound"));
    assert_eq!(condition(p, "Accepted"), ("True", "Accepted"));
}

#[test]
fn a_backend_of_another_kind_is_invalid_kind() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.route(route(
        "default",
        "web",
        1,
        one_rule(json!({"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b", "port": 80}]})),
    ));
    let r = c.resolve();
    assert_eq!(
        condition(parent(&r, "default", "web"), "ResolvedRefs"),
        ("False", "InvalidKind")
    );
}

#[test]
fn the_four_filters_are_served_others_are_refused_per_rule() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.route(route(
        "default",
        "mixed",
        1,
        json!({"parentRefs": [{"name": "gw"}], "rules": [
            {"filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x", "value": "1"}], "remove": ["y"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "z", "value": "2"}]}},
             ],
             "backendRefs": [{"name": "web", "port": 80}]},
            {"matches": [{"path": {"value": "/old"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}, "statusCode": 301}}]},
            {"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "api", "port": 80}}}],
             "backendRefs": [{"name": "web", "port": 80}]},
            {"matches": [{"path": {"type": "RegularExpression", "value": "/a(.*"}}],
             "backendRefs": [{"name": "web", "port": 80}]},
        ]}),
    ));
    c.route(route(
        "default",
        "both",
        2,
        one_rule(json!({"filters": [
            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example.com"}},
        ]})),
    ));
    c.route(route(
        "default",
        "prefix-rewrite-on-exact",
        3,
        one_rule(json!({
            "matches": [{"path": {"type": "Exact", "value": "/a"}}],
            "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}],
            "backendRefs": [{"name": "web", "port": 80}],
        })),
    ));
    let r = c.resolve();
    let served: Vec<usize> = r
        .attachments
        .iter()
        .filter(|a| a.route.1 == "mixed")
        .map(|a| a.rule_index)
        .collect();
    assert_eq!(served, [0, 1]);
    let p = parent(&r, "default", "mixed");
    assert_eq!(condition(p, "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(p, "PartiallyInvalid"),
        ("True", "UnsupportedValue")
    );
    let message = &p.condition("PartiallyInvalid").unwrap().message;
    assert!(
        message.contains("rule 2") && message.contains("RequestMirror"),
        "{message}"
    );
    assert!(
        message.contains("rule 3") && message.contains("regular expression"),
        "{message}"
    );
    for name in ["both", "prefix-rewrite-on-exact"] {
        assert_eq!(
            condition(parent(&r, "default", name), "Accepted"),
            ("False", "IncompatibleFilters"),
            "{name}"
        );
        assert!(r.attachments.iter().all(|a| a.route.1 != name));
    }
}
