//! Route lookup of the proxy's compiled table: 10,000 hosts × 5 paths (plus 1,000
//! wildcard hosts), the way a request does it (host normalisation included).
//! Target: ≤ 200 ns per lookup. Run: `cargo bench --bench route_lookup`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use podgate::proxy::Router;
use podgate_core::model::{
    HostPattern, PathMatch, PortRef, Route, RouteTable, UpstreamKey, VirtualHost,
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

criterion_group!(benches, bench);
criterion_main!(benches);
