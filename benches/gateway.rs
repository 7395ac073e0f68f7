//! The Index with the Gateway API: one cluster, 2,000 HTTPRoutes (one hostname, two
//! rules each: a header match and a weighted split) attached to one Gateway, their
//! 4,000 Services with 10 endpoints each. What one HTTPRoute change costs (the cluster's
//! Gateway API objects are resolved again as a whole), and what an endpoint change
//! costs with them present (nothing is resolved).
//!
//! `cargo bench --bench gateway` — results in benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use podgate_core::gateway::{Gateway, GatewayClass, HttpRoute};
use podgate_core::index::{Index, IndexConfig, Kind, Object};
use podgate_core::model::ClusterName;
use podgate_sim::objects::{service, slice};
use serde_json::json;

const ROUTES: usize = 2_000;
const ENDPOINTS: usize = 10;

fn route(i: usize, stable_weight: u32) -> Object {
    let r: HttpRoute = serde_json::from_value(json!({
        "metadata": {"namespace": "apps", "name": format!("route-{i}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"parentRefs": [{"name": "edge"}], "hostnames": [format!("app-{i}.example.com")],
                 "rules": [
                   {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                                 "headers": [{"name": "x-canary", "value": "true"}]}],
                    "backendRefs": [{"name": format!("canary-{i}"), "port": 80}]},
                   {"backendRefs": [{"name": format!("stable-{i}"), "port": 80, "weight": stable_weight},
                                    {"name": format!("canary-{i}"), "port": 80, "weight": 10}]},
                 ]},
    }))
    .unwrap();
    r.into()
}

fn endpoints(name: &str, n: usize, terminating: Option<usize>) -> Object {
    let mut b = slice("apps", &format!("{name}-abcde"), name).port("http", 8080);
    for e in 0..ENDPOINTS {
        let addr = format!("10.{}.{}.{}", n / 256 % 256, n % 256, e + 1);
        b = if terminating == Some(e) {
            b.terminating(&addr)
        } else {
            b.ready(&addr)
        };
    }
    b.build().into()
}

fn world() -> Index {
    let idc = ClusterName::new("idc");
    let mut index = Index::new(IndexConfig {
        clusters: vec![(idc.clone(), 100)],
        ..IndexConfig::default()
    });
    let class: GatewayClass = serde_json::from_value(json!({
        "metadata": {"name": "podgate"},
        "spec": {"controllerName": "podgate.io/gateway-controller"}}))
    .unwrap();
    let gateway: Gateway = serde_json::from_value(json!({
        "metadata": {"namespace": "apps", "name": "edge"},
        "spec": {"gatewayClassName": "podgate",
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}))
    .unwrap();
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..ROUTES {
        for (k, name) in [format!("stable-{i}"), format!("canary-{i}")]
            .iter()
            .enumerate()
        {
            services.push(service("apps", name).port("http", 80).build().into());
            slices.push(endpoints(name, i * 2 + k, None));
        }
    }
    index.reset(&idc, Kind::Service, &services);
    index.reset(&idc, Kind::EndpointSlice, &slices);
    index.apply(&idc, class);
    index.apply(&idc, gateway);
    let routes: Vec<Object> = (0..ROUTES).map(|i| route(i, 90)).collect();
    index.reset(&idc, Kind::HTTPRoute, &routes);
    assert_eq!(index.snapshot().vhosts.len(), ROUTES);
    assert_eq!(index.snapshot().upstreams.len(), ROUTES * 2);
    index
}

fn bench(c: &mut Criterion) {
    let idc = ClusterName::new("idc");
    let mut group = c.benchmark_group("gateway");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("load_2k_routes", |b| b.iter(|| black_box(world())));
    group.finish();

    let mut index = world();
    let mut group = c.benchmark_group("gateway");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut flipped = 0u32;
    group.bench_function("route_change_of_2k", |b| {
        b.iter(|| {
            flipped += 1;
            let changes = index.apply(&idc, route(7, 80 + flipped % 2));
            assert_eq!(changes.routes.len(), 1);
            black_box(changes)
        });
    });
    let flips = [
        endpoints("stable-7", 14, Some(3)),
        endpoints("stable-7", 14, None),
    ];
    let mut n = 0usize;
    group.bench_function("endpoint_flip_with_2k_routes", |b| {
        b.iter(|| {
            n += 1;
            let changes = index.apply(&idc, flips[n % 2].clone());
            black_box(changes)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
