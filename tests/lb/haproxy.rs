//! What is HAProxy's own beyond the conformance suite: new backends need a reload
//! (rate-limited, servers kept), big route tables go through the runtime API in parts,
//! and an HAProxy started before podgate with an empty podgate.cfg gets it.

use crate::conformance::Haproxy;
use crate::harness::{Pod, table, upstream, vhost, who};

use std::time::Duration;

use podgate::lb::LbAdapter;
use podgate_core::model::{Batch, PathMatch};

macro_rules! require_haproxy {
    () => {
        if !crate::harness::require_program("haproxy") {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_upstreams_reload_once_and_keep_servers() {
    require_haproxy!();
    let h = Haproxy::start(false, Duration::from_secs(1)).await;
    let a = Pod::start("a", "127.1.6.1").await;
    let b = Pod::start("b", "127.1.6.2").await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("one", vec![a.active(1)])],
        routes: Some(table(
            vec![(
                "r.test",
                vhost(
                    &[
                        (PathMatch::prefix("/one"), "one"),
                        (PathMatch::prefix("/two"), "two"),
                    ],
                    None,
                ),
            )],
            None,
        )),
        ..Batch::default()
    })
    .await;
    let pid = h.pid().await;
    // A second upstream needs a backend: one reload, after which "one" still serves.
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("two", vec![b.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_ne!(h.pid().await, pid, "a new backend needs a reload");
    assert_eq!(who(h.lb, "r.test", "/one").await, "a");
    assert_eq!(who(h.lb, "r.test", "/two").await, "b");

    // Reloads are rate-limited: two more new upstreams in a row need two reloads,
    // which are at least `min_reload_interval` (1 s here; a reload itself takes far
    // less) apart.
    let started = std::time::Instant::now();
    for svc in ["three", "four"] {
        h.apply(&Batch {
            epoch: 1,
            upsert_upstreams: vec![upstream(svc, vec![b.active(1)])],
            ..Batch::default()
        })
        .await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "two reloads within {:?}",
        started.elapsed()
    );
    assert_eq!(
        who(h.lb, "r.test", "/one").await,
        "a",
        "servers survive reloads"
    );
    // A stale epoch is fenced.
    let err = h.adapter.apply(&Batch::default()).await.unwrap_err();
    assert!(matches!(err, podgate::lb::LbError::Fenced(1)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_route_tables_fit_through_the_runtime_api() {
    require_haproxy!();
    let h = Haproxy::start(false, Duration::from_millis(200)).await;
    let a = Pod::start("a", "127.1.8.1").await;
    let b = Pod::start("b", "127.1.8.2").await;
    // ~1,500 map entries: far more than one runtime API buffer holds.
    let hosts: Vec<String> = (0..1500).map(|i| format!("host-{i}.big.test")).collect();
    let routes = table(
        hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let svc = if i % 2 == 0 { "even" } else { "odd" };
                (host.as_str(), vhost(&[(PathMatch::prefix("/"), svc)], None))
            })
            .collect(),
        None,
    );
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![
            upstream("even", vec![a.active(1)]),
            upstream("odd", vec![b.active(1)]),
        ],
        routes: Some(routes.clone()),
        ..Batch::default()
    })
    .await;
    for i in [0, 1, 777, 1498, 1499] {
        let want = if i % 2 == 0 { "a" } else { "b" };
        assert_eq!(who(h.lb, &hosts[i], "/").await, want, "{}", hosts[i]);
    }
    assert_eq!(h.adapter.observe().await.unwrap().routes, routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_with_an_empty_podgate_cfg_gets_it_on_first_apply() {
    require_haproxy!();
    let mut h = Haproxy::start(false, Duration::from_millis(200)).await;
    // As an operator might: `touch podgate.cfg` and start HAProxy before podgate.
    h.program.kill();
    std::fs::write(h.adapter.settings().config_file(), "").unwrap();
    h.program.launch().await;
    let a = Pod::start("a", "127.1.10.1").await;
    // A routes-only batch: no new upstream, yet the maps need podgate's file loaded.
    h.apply(&Batch {
        epoch: 1,
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    h.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        ..Batch::default()
    })
    .await;
    assert_eq!(who(h.lb, "x.test", "/").await, "a");
}
