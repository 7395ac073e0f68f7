//! Path matching, row by row from the Kubernetes Ingress documentation's examples table
//! (https://kubernetes.io/docs/concepts/services-networking/ingress/#examples), plus
//! the trailing-slash, case and precedence rules.

use crate::common;

use common::{idc, index, route};
use podgate_sim::objects::ingress;

/// One row: the rules of the Ingress as (type, path), a request path, and whether it
/// matches (and which rule wins: its index).
struct Row {
    rules: &'static [(&'static str, &'static str)],
    request: &'static str,
    winner: Option<usize>,
}

const TABLE: &[Row] = &[
    Row {
        rules: &[("Prefix", "/")],
        request: "/anything/at/all",
        winner: Some(0),
    },
    Row {
        rules: &[("Exact", "/foo")],
        request: "/foo",
        winner: Some(0),
    },
    Row {
        rules: &[("Exact", "/foo")],
        request: "/bar",
        winner: None,
    },
    Row {
        rules: &[("Exact", "/foo")],
        request: "/foo/",
        winner: None,
    },
    Row {
        rules: &[("Exact", "/foo/")],
        request: "/foo",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/foo")],
        request: "/foo",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/foo")],
        request: "/foo/",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/foo/")],
        request: "/foo",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/foo/")],
        request: "/foo/",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa/bb")],
        request: "/aaa/bbb",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb")],
        request: "/aaa/bbb",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb/")],
        request: "/aaa/bbb",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb")],
        request: "/aaa/bbb/",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb")],
        request: "/aaa/bbb/ccc",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb")],
        request: "/aaa/bbbxyz",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/"), ("Prefix", "/aaa")],
        request: "/aaa/ccc",
        winner: Some(1),
    },
    Row {
        rules: &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
        request: "/aaa/bbb",
        winner: Some(2),
    },
    Row {
        rules: &[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
        request: "/ccc",
        winner: Some(0),
    },
    Row {
        rules: &[("Prefix", "/aaa")],
        request: "/ccc",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/foo"), ("Exact", "/foo")],
        request: "/foo",
        winner: Some(1),
    },
    // Beyond the table: ImplementationSpecific is Prefix; Exact is case-sensitive;
    // the longest match wins whatever the order of the rules.
    Row {
        rules: &[("ImplementationSpecific", "/foo")],
        request: "/foo/bar",
        winner: Some(0),
    },
    Row {
        rules: &[("Exact", "/Foo")],
        request: "/foo",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/foo")],
        request: "/FOO",
        winner: None,
    },
    Row {
        rules: &[("Prefix", "/aaa/bbb"), ("Prefix", "/aaa")],
        request: "/aaa/bbb/c",
        winner: Some(0),
    },
    Row {
        rules: &[("Exact", "/foo/"), ("Prefix", "/foo")],
        request: "/foo/",
        winner: Some(0),
    },
];

#[test]
fn kubernetes_path_matching_table() {
    for (n, row) in TABLE.iter().enumerate() {
        let mut index = index();
        let mut ing = ingress("ns", "ing");
        for (i, (kind, path)) in row.rules.iter().enumerate() {
            ing = ing.route("foo.com", kind, path, &format!("svc{i}"), 80);
        }
        index.apply(&idc(), ing);
        let table = index.snapshot().route_table();
        let want = row
            .winner
            .map_or_else(|| "-".to_owned(), |i| format!("ns/svc{i}:80"));
        assert_eq!(
            route(&table, "foo.com", row.request),
            want,
            "row {n}: rules {:?}, request {}",
            row.rules,
            row.request
        );
    }
}

#[test]
fn invalid_paths_are_skipped_with_a_diagnostic() {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("ns", "ing")
            .route("foo.com", "Prefix", "relative", "bad", 80)
            .route("foo.com", "Prefix", "/ok", "good", 80),
    );
    let table = index.snapshot().route_table();
    assert_eq!(route(&table, "foo.com", "/ok"), "ns/good:80");
    assert_eq!(table.hosts.values().next().unwrap().routes.len(), 1);
    let reasons: Vec<_> = index
        .diagnostics()
        .iter()
        .map(|r| r.diagnostic.reason)
        .collect();
    assert!(reasons.contains(&"InvalidPath"), "{reasons:?}");
}
