//! Route lookup of the proxy's compiled table: 10,000 hosts × 5 paths (plus 1,000
//! wildcard hosts), the way a request does it (host normalisation included); the same
//! through the fast path's lookup (which also answers whether the host has Gateway API
//! rules); and the Gateway API case: 1,000 hosts × 5 rules matching on method, headers
//! and query parameters. Target: ≤ 100 ns per Ingress lookup.
//! Run: `cargo bench --bench route_lookup`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use podgate::proxy::Router;
use podgate_core::model::{
    HostPattern, HttpRule, NameValue, PathMatch, PortRef, Route, RouteTable, UpstreamKey,
    VirtualHost, WeightedBackend,
};

fn table() -> RouteTable {
    let mut hosts = BTreeMap::new();
    let paths = ["/api/v1", "/api", "/static", "/login", "/"];
    let host = |i: usize| format!("svc-{i}.team-{}.example.com", i % 97);
    for i in 0..10_000 {
        let mut routes: Vec<Route> = paths
            .iter()
            .enumerate()
            .map(|(j, p)| Route {
                path: if j == 3 {
                    PathMatch::exact(p)
                } else {
                    PathMatch::prefix(p)
                },
                upstream: UpstreamKey::new("ns", &format!("svc-{i}-{j}"), PortRef::Number(80)),
            })
            .collect();
        routes.sort_by(|a, b| a.path.precedence(&b.path));
        hosts.insert(
            HostPattern::parse(&host(i)).unwrap(),
            VirtualHost {
                routes,
                default_backend: None,
                tls: None,
                rules: Vec::new(),
            },
        );
    }
    for i in 0..1_000 {
        hosts.insert(
            HostPattern::parse(&format!("*.wild-{i}.example.org")).unwrap(),
            VirtualHost {
                routes: vec![Route {
                    path: PathMatch::prefix("/"),
                    upstream: UpstreamKey::new("ns", &format!("wild-{i}"), PortRef::Number(80)),
                }],
                default_backend: None,
                tls: None,
                rules: Vec::new(),
            },
        );
    }
    RouteTable {
        any_host: None,
        hosts,
        default_backend: None,
    }
}

fn bench(c: &mut Criterion) {
    let router = Router::compile(table());
    // A spread of requests: deep prefix, exact, root fallback, wildcard, mixed case with
    // a port, and a miss.
    let requests: Vec<(String, &str)> = (0..1_000)
        .map(|i| match i % 6 {
            0 => (
                format!("svc-{i}.team-{}.example.com", i % 97),
                "/api/v1/users/42",
            ),
            1 => (format!("svc-{i}.team-{}.example.com", i % 97), "/login"),
            2 => (
                format!("svc-{i}.team-{}.example.com", i % 97),
                "/index.html",
            ),
            3 => (format!("x{i}.wild-{}.example.org", i % 1_000), "/"),
            4 => (
                format!("SVC-{i}.team-{}.example.com:8080", i % 97),
                "/static/app.js",
            ),
            _ => (format!("nowhere-{i}.example.net"), "/"),
        })
        .collect();
    for (host, path) in &requests[..6] {
        let found = router.route(host, path).is_some();
        assert_eq!(found, !host.starts_with("nowhere"), "{host}{path}");
    }
    let mut i = 0;
    c.bench_function("route_lookup_10k_hosts_x5_paths", |b| {
        b.iter(|| {
            let (host, path) = &requests[i % requests.len()];
            i += 1;
            black_box(router.route(black_box(host), black_box(path)))
        });
    });
}

/// 1,000 hosts, each with five rules in precedence order: an exact path, a canary by
/// header, a POST, a query parameter, and the prefix `/`.
fn rules_table() -> RouteTable {
    let rule = |i: usize, path: PathMatch| {
        HttpRule::to(
            path,
            vec![WeightedBackend {
                upstream: Some(UpstreamKey::new(
                    "ns",
                    &format!("gw-{i}"),
                    PortRef::Number(80),
                )),
                weight: 1,
            }],
        )
    };
    let nv = |n: &str, v: &str| NameValue {
        name: n.into(),
        value: v.into(),
    };
    let mut t = RouteTable::default();
    for i in 0..1_000 {
        let mut canary = rule(i, PathMatch::prefix("/api"));
        canary.headers = vec![nv("x-canary", "true")];
        let mut post = rule(i, PathMatch::prefix("/api"));
        post.method = Some("POST".into());
        let mut debug = rule(i, PathMatch::prefix("/api"));
        debug.query = vec![nv("debug", "1")];
        let rules = vec![
            rule(i, PathMatch::exact("/api/health")),
            post,
            canary,
            debug,
            rule(i, PathMatch::prefix("/")),
        ];
        t.hosts.insert(
            HostPattern::parse(&format!("gw-{i}.example.com")).unwrap(),
            VirtualHost {
                rules,
                ..VirtualHost::default()
            },
        );
    }
    t
}

fn bench_fast_path(c: &mut Criterion) {
    let router = Router::compile(table());
    let requests: Vec<String> = (0..1_000)
        .map(|i| format!("svc-{i}.team-{}.example.com", i % 97))
        .collect();
    let mut i = 0;
    c.bench_function("route_lookup_fast_path_10k_hosts_x5_paths", |b| {
        b.iter(|| {
            let host = &requests[i % requests.len()];
            i += 1;
            black_box(router.route_without_rules(black_box(host), black_box("/api/v1/users/42")))
                .ok()
        });
    });
}

fn bench_rules(c: &mut Criterion) {
    let router = Router::compile(rules_table());
    let mut canary = http::HeaderMap::new();
    canary.insert("x-canary", http::HeaderValue::from_static("true"));
    canary.insert("user-agent", http::HeaderValue::from_static("bench"));
    let mut plain = http::HeaderMap::new();
    plain.insert("user-agent", http::HeaderValue::from_static("bench"));
    // The canary by header, a query match, and the fallback: three of the five rules.
    let requests: Vec<(String, &http::HeaderMap, Option<&str>, &str)> = (0..1_000)
        .map(|i| {
            let host = format!("gw-{i}.example.com");
            match i % 3 {
                0 => (host, &canary, None, "/api/v1"),
                1 => (host, &plain, Some("x=2&debug=1"), "/api/v1"),
                _ => (host, &plain, None, "/index.html"),
            }
        })
        .collect();
    for (host, headers, query, path) in &requests[..3] {
        let rule = router.rule_for(host, &http::Method::GET, path, headers, *query);
        assert!(rule.is_some(), "{host}{path}");
    }
    let mut i = 0;
    c.bench_function("route_lookup_http_route_1k_hosts_x5_rules", |b| {
        b.iter(|| {
            let (host, headers, query, path) = &requests[i % requests.len()];
            i += 1;
            black_box(router.rule_for(
                black_box(host),
                &http::Method::GET,
                black_box(path),
                headers,
                *query,
            ))
            .is_some()
        });
    });
}

criterion_group!(benches, bench, bench_fast_path, bench_rules);
criterion_main!(benches);
