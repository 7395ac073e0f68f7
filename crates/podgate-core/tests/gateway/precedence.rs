//! The specification's precedence between the matches of all routes on one hostname,
//! and the first match in that order serving a request.

use std::borrow::Cow;

use podgate_core::gateway::{Attachment, HostRules, Resolution, host_rules, http_rule};
use serde_json::{Value, json};

use super::common::{Cluster, http, route};

/// Whether match `m` of an attachment takes a request, as an LB decides it: through the
/// contract's rule (`gateway::http_rule`) and `HttpRule::matches`.
fn takes(
    a: &Attachment,
    m: usize,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
) -> bool {
    let rule = http_rule(a, m).expect("a rule the contract carries");
    let query: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .iter()
        .map(|(n, v)| (Cow::Borrowed(*n), Cow::Borrowed(*v)))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    rule.matches(method, path, header, &query)
}

fn rule(matches: Value) -> Value {
    let mut spec = json!({
        "parentRefs": [{"name": "gw"}],
        "hostnames": ["web.example.com"],
        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
    });
    spec["rules"][0]["matches"] = matches;
    spec
}

/// The routes' names in the order their matches are tried on `web.example.com`.
fn order(r: &Resolution) -> Vec<String> {
    let groups = host_rules(&r.attachments);
    let group: &HostRules = groups
        .iter()
        .find(|g| g.hostname.as_deref() == Some("web.example.com"))
        .unwrap();
    group
        .rules
        .iter()
        .map(|x| r.attachments[x.attachment].route.1.clone())
        .collect()
}

#[test]
fn exact_then_longest_prefix_then_method_headers_query_then_oldest_then_name() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    let foo = json!({"type": "PathPrefix", "value": "/foo"});
    let routes = [
        (
            "query",
            1,
            json!([{"path": foo, "queryParams": [{"name": "v", "value": "2"}]}]),
        ),
        ("new", 9, json!([{"path": foo}])),
        ("b", 5, json!([{"path": foo}])),
        ("a", 5, json!([{"path": foo}])),
        ("old", 0, json!([{"path": foo}])),
        (
            "headers1",
            1,
            json!([{"path": foo, "headers": [{"name": "x", "value": "1"}]}]),
        ),
        (
            "headers2",
            1,
            json!([{"path": foo, "headers": [
            {"name": "x", "value": "1"}, {"name": "y", "value": "1"}]}]),
        ),
        ("method", 1, json!([{"path": foo, "method": "GET"}])),
        (
            "long",
            1,
            json!([{"path": {"type": "PathPrefix", "value": "/foo/bar"}}]),
        ),
        (
            "exact",
            1,
            json!([{"path": {"type": "Exact", "value": "/foo"}}]),
        ),
    ];
    for (name, created, matches) in routes {
        c.route(route("default", name, created, rule(matches)));
    }
    let r = c.resolve();
    assert_eq!(
        order(&r),
        [
            "exact", "long", "method", "headers2", "headers1", "query", "old", "a", "b", "new"
        ]
    );
}

#[test]
fn within_one_route_the_first_rule_wins_a_tie_and_defaults_fill_in_a_prefix_of_slash() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.route(route(
        "default",
        "web",
        1,
        json!({
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {"matches": [{"path": {"value": "/foo"}}], "backendRefs": [{"name": "web", "port": 80}]},
                {"matches": [{"path": {"value": "/foo/"}}], "backendRefs": [{"name": "api", "port": 80}]},
                {"backendRefs": [{"name": "api", "port": 81}]},
            ],
        }),
    ));
    let r = c.resolve();
    let groups = host_rules(&r.attachments);
    let served = |method: &str, path: &str, headers: &[(&str, &str)]| {
        groups[0].rules.iter().find_map(|x| {
            let a = &r.attachments[x.attachment];
            takes(a, x.match_index, method, path, headers, &[])
                .then(|| (a.rule_index, a.rule.backends[0].port))
        })
    };
    // `/foo` and `/foo/` are one prefix: the first rule wins.
    assert_eq!(served("GET", "/foo/x", &[]), Some((0, 80)));
    assert_eq!(served("GET", "/foo", &[]), Some((0, 80)));
    // Element-wise: `/foobar` is not under `/foo`; the defaulted `/` takes it.
    assert_eq!(served("GET", "/foobar", &[]), Some((2, 81)));
}

#[test]
fn a_match_holds_only_when_every_part_does() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    c.route(route(
        "default",
        "web",
        1,
        rule(json!([
            {"path": {"type": "PathPrefix", "value": "/foo"},
             "headers": [{"name": "Version", "value": "v2"}, {"name": "version", "value": "ignored"}],
             "method": "POST"},
            {"path": {"type": "PathPrefix", "value": "/v2/foo"},
             "queryParams": [{"name": "Debug", "value": "1"}]},
        ])),
    ));
    let r = c.resolve();
    let rule = &r.attachments[0].rule;
    // The first of equivalent header names counts.
    assert_eq!(
        rule.matches[0].headers,
        [("version".to_owned(), "v2".to_owned())]
    );
    let any = |method, path, headers: &[(&str, &str)], query: &[(&str, &str)]| {
        (0..rule.matches.len()).any(|m| takes(&r.attachments[0], m, method, path, headers, query))
    };
    assert!(any("POST", "/foo/a", &[("version", "v2")], &[]));
    assert!(any("POST", "/foo", &[("VERSION", "v2")], &[]));
    assert!(!any("GET", "/foo", &[("version", "v2")], &[]));
    assert!(!any("POST", "/foo", &[("version", "v3")], &[]));
    assert!(any("GET", "/v2/foo", &[], &[("Debug", "1")]));
    // Query parameter names are case-sensitive.
    assert!(!any("GET", "/v2/foo", &[], &[("debug", "1")]));
}

#[test]
fn regular_expression_paths_match_the_whole_path_after_exact_and_before_prefixes() {
    let mut c = Cluster::with_gateway(json!([http("a", 80)]));
    let routes = [
        (
            "prefix",
            json!([{"path": {"type": "PathPrefix", "value": "/api/v1/users"}}]),
        ),
        (
            "regex",
            json!([{"path": {"type": "RegularExpression", "value": "/api/v[0-9]+/.*"}}]),
        ),
        (
            "exact",
            json!([{"path": {"type": "Exact", "value": "/api/v1/users"}}]),
        ),
    ];
    for (name, matches) in routes {
        c.route(route("default", name, 1, rule(matches)));
    }
    let r = c.resolve();
    assert_eq!(order(&r), ["exact", "regex", "prefix"]);
    let groups = host_rules(&r.attachments);
    let served = |path: &str| {
        groups[0].rules.iter().find_map(|x| {
            let a = &r.attachments[x.attachment];
            takes(a, x.match_index, "GET", path, &[], &[]).then(|| a.route.1.clone())
        })
    };
    assert_eq!(served("/api/v1/users").as_deref(), Some("exact"));
    assert_eq!(served("/api/v2/x").as_deref(), Some("regex"));
    // The whole path must match: no match inside a longer path.
    assert_eq!(served("/x/api/v2/x"), None);
    assert_eq!(served("/api/vx/users/1"), None);
}
