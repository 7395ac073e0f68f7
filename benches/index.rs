//! The Index on a generated world: 3 clusters × 5,000 Services × 10 endpoints
//! (150,000 endpoints) and 5,000 Ingresses with 2 paths each.
//!
//! `cargo bench --bench index` — results and targets in benches/README.md.

use std::hint::black_box;
use std::time::Duration;

use cap::Cap;
use criterion::{Criterion, criterion_group, criterion_main};
use podgate_core::index::{Index, IndexConfig, Kind, Object};
use podgate_core::model::ClusterName;
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};

/// Counts live heap bytes, for the bytes-per-endpoint figure, over the allocator the
/// `podgate` binary uses (mimalloc, see `src/main.rs`), so timings match the product.
#[global_allocator]
static ALLOCATOR: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

const CLUSTERS: [&str; 3] = ["idc", "tke", "aws"];
const SERVICES: usize = 5_000;
const ENDPOINTS: usize = 10;
const CONTROLLER: &str = "podgate.io/ingress-controller";

/// Every object of one kind in one cluster, ready for `reset`.
type Listing = (Kind, Vec<Object>);

struct World {
    clusters: Vec<(ClusterName, Vec<Listing>)>,
}

fn address(cluster: usize, service: usize, endpoint: usize) -> String {
    let n = service * ENDPOINTS + endpoint;
    format!("10.{}.{}.{}", cluster, n / 256, n % 256)
}

fn endpoint_slice(cluster: usize, s: usize, terminating: Option<usize>) -> Object {
    let mut b = slice("apps", &format!("svc-{s}-abcde"), &format!("svc-{s}")).port("http", 8080);
    for e in 0..ENDPOINTS {
        let addr = address(cluster, s, e);
        b = if terminating == Some(e) {
            b.terminating(&addr)
        } else {
            b.ready(&addr)
        };
        b = b.at(
            &format!("zone-{}", e % 3),
            &format!("node-{}", (s + e) % 500),
        );
    }
    b.into()
}

fn world() -> World {
    let clusters = CLUSTERS
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let classes = vec![default_class(ingress_class("podgate", CONTROLLER)).into()];
            let services = (0..SERVICES)
                .map(|s| service("apps", &format!("svc-{s}")).port("http", 80).into())
                .collect();
            let slices = (0..SERVICES).map(|s| endpoint_slice(c, s, None)).collect();
            // 5,000 Ingresses in all, spread over the clusters; every cluster runs
            // every Service (namespace sameness merges them).
            let ingresses = (0..SERVICES)
                .filter(|s| s % CLUSTERS.len() == c)
                .map(|s| {
                    let svc = format!("svc-{s}");
                    let host = format!("app-{s}.example.com");
                    ingress("apps", &svc)
                        .created(1_700_000_000)
                        .route(&host, "Prefix", "/", &svc, 80)
                        .route(&host, "Exact", "/healthz", &svc, 80)
                        .into()
                })
                .collect();
            let kinds = vec![
                (Kind::IngressClass, classes),
                (Kind::Service, services),
                (Kind::EndpointSlice, slices),
                (Kind::Ingress, ingresses),
            ];
            (ClusterName::new(name), kinds)
        })
        .collect();
    World { clusters }
}

fn load(world: &World) -> Index {
    let config = IndexConfig {
        clusters: world
            .clusters
            .iter()
            .map(|(c, _)| (c.clone(), 100))
            .collect(),
        ..IndexConfig::default()
    };
    let mut index = Index::new(config);
    for (cluster, kinds) in &world.clusters {
        for (kind, objects) in kinds {
            index.reset(cluster, *kind, objects);
        }
    }
    index
}

fn bench(c: &mut Criterion) {
    let world = world();

    // Heap held by a loaded Index, per endpoint, and what each kind adds.
    let before = ALLOCATOR.allocated();
    let index = load(&world);
    let bytes = ALLOCATOR.allocated() - before;
    drop(index);
    let config = IndexConfig {
        clusters: world
            .clusters
            .iter()
            .map(|(c, _)| (c.clone(), 100))
            .collect(),
        ..IndexConfig::default()
    };
    let mut staged = Index::new(config);
    for step in [0, 1, 3, 2] {
        let before = ALLOCATOR.allocated();
        for (cluster, kinds) in &world.clusters {
            staged.reset(cluster, kinds[step].0, &kinds[step].1);
        }
        let added = ALLOCATOR.allocated() - before;
        println!("  {:?}: {added} bytes", world.clusters[0].1[step].0);
    }
    drop(staged);
    let index = load(&world);
    let endpoints = CLUSTERS.len() * SERVICES * ENDPOINTS;
    println!(
        "index heap: {bytes} bytes for {endpoints} endpoints = {} bytes/endpoint",
        bytes / endpoints
    );
    assert_eq!(index.snapshot().upstreams.len(), SERVICES);
    drop(index);

    let mut group = c.benchmark_group("index");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("load_world", |b| b.iter(|| black_box(load(&world))));
    group.finish();

    let mut index = load(&world);
    let idc = ClusterName::new("idc");
    let mut group = c.benchmark_group("index");
    // Alternates one endpoint of one slice between ready and terminating; the objects
    // are cloned before the clock starts. Criterion calls the closure several times, so
    // the count of flips lives outside it.
    let flips = [endpoint_slice(0, 42, Some(3)), endpoint_slice(0, 42, None)];
    let mut flipped = 0usize;
    group.bench_function("endpoint_flip", |b| {
        b.iter_custom(|iters| {
            let objects: Vec<Object> = (0..iters)
                .map(|_| {
                    flipped += 1;
                    flips[(flipped + 1) % 2].clone()
                })
                .collect();
            let start = std::time::Instant::now();
            for obj in objects {
                let changes = index.apply(&idc, obj);
                assert_eq!(changes.upstreams.len(), 1);
                black_box(changes);
            }
            start.elapsed()
        });
    });
    // Back to the world as listed, so that the relist below finds no change.
    index.apply(&idc, endpoint_slice(0, 42, None));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("relist_cluster_no_change", |b| {
        let kinds = &world.clusters[0].1;
        b.iter(|| {
            for (kind, objects) in kinds {
                let changes = index.reset(&idc, *kind, objects);
                assert!(changes.is_empty());
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
