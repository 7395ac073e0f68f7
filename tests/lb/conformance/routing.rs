//! Routing: the Kubernetes path-matching table with hosts, wildcards, per-host and
//! catch-all defaults, and host-less rules, each answer checked with a real request.

use super::under_test::{Kind, Lb};
use crate::harness::{Pod, batch_of, get, table, vhost, who};

use podgate_core::model::{Batch, PathMatch};

pub(crate) async fn routes_by_host_and_path(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(1));
    let pods = [
        Pod::start("root", &ip(1)).await,
        Pod::start("foo-prefix", &ip(2)).await,
        Pod::start("foo-exact", &ip(3)).await,
        Pod::start("foo-bar", &ip(4)).await,
        Pod::start("wild", &ip(5)).await,
        Pod::start("vdefault", &ip(6)).await,
        Pod::start("catchall", &ip(7)).await,
    ];
    let svc = |i: usize| pods[i].name.as_str();
    let routes = table(
        vec![
            (
                "app.example.com",
                vhost(
                    &[
                        (PathMatch::prefix("/"), svc(0)),
                        (PathMatch::prefix("/foo/"), svc(1)),
                        (PathMatch::exact("/foo"), svc(2)),
                        (PathMatch::prefix("/foo/bar"), svc(3)),
                        (PathMatch::prefix("/semi;colon"), svc(1)),
                        (PathMatch::exact("/caf\u{e9}"), svc(2)),
                        (PathMatch::prefix("/it's"), svc(3)),
                    ],
                    None,
                ),
            ),
            (
                "*.example.com",
                vhost(&[(PathMatch::prefix("/api"), svc(4))], Some(svc(5))),
            ),
        ],
        Some(svc(6)),
    );
    let batch = batch_of(&pods, &routes);
    lb.apply(&batch).await;

    // The Kubernetes path-matching table, plus hosts.
    let cases = [
        ("app.example.com", "/", "root"),
        ("APP.example.com:8080", "/x", "root"),
        ("app.example.com", "/foo", "foo-exact"),
        ("app.example.com", "/FOO", "root"),
        ("app.example.com", "/foo/", "foo-prefix"),
        ("app.example.com", "/foo/x", "foo-prefix"),
        ("app.example.com", "/foobar", "root"),
        ("app.example.com", "/foo/bar", "foo-bar"),
        ("app.example.com", "/foo/bar/baz", "foo-bar"),
        ("app.example.com", "/foo/barbaz", "foo-prefix"),
        ("app.example.com", "/semi;colon/x", "foo-prefix"),
        ("app.example.com", "/semi;colonx", "root"),
        (
            "app.example.com",
            "/caf%C3%A9",
            if lb.decodes_paths() {
                "foo-exact"
            } else {
                "root"
            },
        ),
        ("app.example.com", "/it's/x", "foo-bar"),
        ("x.example.com", "/api", "wild"),
        ("x.example.com", "/api/v1", "wild"),
        ("x.example.com", "/apix", "vdefault"),
        ("a.b.example.com", "/api", "catchall"),
        ("example.com", "/api", "catchall"),
        ("other.test", "/", "catchall"),
    ];
    for (host, path, want) in cases {
        assert_eq!(who(lb.addr(), host, path).await, want, "{host}{path}");
    }

    // Without a catch-all, an unknown host is a 404.
    let mut no_default = routes.clone();
    no_default.default_backend = None;
    lb.apply(&Batch {
        epoch: 1,
        routes: Some(no_default.clone()),
        ..Batch::default()
    })
    .await;
    assert_eq!(get(lb.addr(), "other.test", "/").await.unwrap().0, 404);
    assert_eq!(who(lb.addr(), "app.example.com", "/foo").await, "foo-exact");

    let state = lb.observe().await;
    assert_eq!(state.routes, no_default, "observe reads the routes back");
    assert_eq!(state.upstreams.len(), pods.len());
    let mut applied = batch.upsert_upstreams.clone();
    applied.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(state.upstreams, applied);
}

/// Host-less Ingress rules (`RouteTable::any_host`): they serve a host that matches no
/// rule, never a host that does, and fall back to the catch-all. Each answer is also
/// checked against the model's reference lookup (`RouteTable::route`).
pub(crate) async fn serves_host_less_rules_for_unknown_hosts(kind: Kind) {
    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(2));
    let pods = [
        Pod::start("host", &ip(1)).await,
        Pod::start("any-api", &ip(2)).await,
        Pod::start("any-only", &ip(3)).await,
        Pod::start("catchall", &ip(4)).await,
    ];
    let mut routes = table(
        vec![("app.test", vhost(&[(PathMatch::prefix("/"), "host")], None))],
        Some("catchall"),
    );
    routes.any_host = Some(vhost(
        &[
            (PathMatch::exact("/only"), "any-only"),
            (PathMatch::prefix("/api"), "any-api"),
        ],
        None,
    ));
    lb.apply(&batch_of(&pods, &routes)).await;
    let cases = [
        ("app.test", "/api", "host"),
        ("other.test", "/api", "any-api"),
        ("other.test", "/api/v1", "any-api"),
        ("other.test", "/only", "any-only"),
        ("other.test", "/only/x", "catchall"),
        ("other.test", "/", "catchall"),
    ];
    for (host, path, want) in cases {
        let reference = routes.route(host, path).map(|k| k.service.to_string());
        assert_eq!(reference.as_deref(), Some(want), "the reference lookup");
        assert_eq!(who(lb.addr(), host, path).await, want, "{host}{path}");
    }
    assert_eq!(
        lb.observe().await.routes,
        routes,
        "observe reads host-less rules back"
    );
}

/// Gateway API rules (contract version 2): an LB that serves them does; one that
/// cannot leaves those hosts out whole (no answer by path alone, which would ignore the
/// rule's other conditions) and keeps serving every Ingress host.
pub(crate) async fn gateway_rules_are_served_or_left_out(kind: Kind) {
    use podgate_core::model::{HostPattern, HttpRule, VirtualHost, WeightedBackend};

    let lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(14));
    let pods = [
        Pod::start("ingress", &ip(1)).await,
        Pod::start("gateway", &ip(2)).await,
    ];
    let mut routes = table(
        vec![(
            "app.example.com",
            vhost(&[(PathMatch::prefix("/"), pods[0].name.as_str())], None),
        )],
        None,
    );
    let rule = HttpRule {
        method: Some("GET".into()),
        source: "default/gw rule 0".into(),
        ..HttpRule::to(
            PathMatch::prefix("/api"),
            vec![WeightedBackend {
                upstream: Some(crate::harness::key(&pods[1].name)),
                weight: 1,
            }],
        )
    };
    routes.hosts.insert(
        HostPattern::parse("gw.example.com").unwrap(),
        // Rules first, then the host's paths: serving only the paths would send
        // `/api` to the wrong pod.
        VirtualHost {
            rules: vec![rule],
            ..vhost(&[(PathMatch::prefix("/"), pods[0].name.as_str())], None)
        },
    );
    let plain = |path: PathMatch, pod: &str| HttpRule {
        source: "default/plain".into(),
        ..HttpRule::to(
            path,
            vec![WeightedBackend {
                upstream: Some(crate::harness::key(pod)),
                weight: 1,
            }],
        )
    };
    routes.hosts.insert(
        HostPattern::parse("plain.example.com").unwrap(),
        VirtualHost {
            rules: vec![
                plain(PathMatch::exact("/v1"), &pods[0].name),
                plain(PathMatch::prefix("/v1"), &pods[1].name),
            ],
            ..VirtualHost::default()
        },
    );
    lb.apply(&batch_of(&pods, &routes)).await;
    assert_eq!(who(lb.addr(), "app.example.com", "/x").await, "ingress");
    // Rules that say no more than a path are served by every LB.
    assert_eq!(
        who(lb.addr(), "plain.example.com", "/v1/x").await,
        "gateway"
    );
    assert_eq!(who(lb.addr(), "plain.example.com", "/v1").await, "ingress");
    if lb.serves_rules() {
        assert_eq!(who(lb.addr(), "gw.example.com", "/api/v1").await, "gateway");
        assert_eq!(who(lb.addr(), "gw.example.com", "/x").await, "ingress");
    } else {
        for path in ["/api/v1", "/x"] {
            let (status, _) = get(lb.addr(), "gw.example.com", path).await.unwrap();
            assert_eq!(status, 404, "{path}: a host with rules is left out whole");
        }
    }
}
