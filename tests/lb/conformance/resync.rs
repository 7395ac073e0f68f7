//! The LB's life beside podgate: a restart is seen (a new instance) and repaired by a
//! full apply, one dead instance does not stop its twin, and a full re-sync of an LB
//! already in sync changes nothing in it.

use super::under_test::{AfterRestart, Kind, Lb};
use crate::harness::{Pod, eventually, get, spread, table, upstream, vhost, who};

use std::time::Duration;

use podgate_core::model::{Batch, LbState, PathMatch, StateSummary};

const SECS: Duration = Duration::from_secs(15);

pub(crate) async fn restart_is_seen_and_resynced(kind: Kind) {
    let mut lb = Lb::start(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(7));
    let a = Pod::start("a", &ip(1)).await;
    let b = Pod::start("b", &ip(2)).await;
    let routes = table(
        vec![("web.test", vhost(&[(PathMatch::prefix("/"), "web")], None))],
        None,
    );
    lb.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(routes.clone()),
        ..Batch::default()
    })
    .await;
    // An endpoint change (HAProxy: applied at run time and written into its file).
    let full = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        routes: Some(routes),
        ..Batch::default()
    };
    lb.apply(&full).await;
    assert_eq!(who(lb.addr(), "web.test", "/").await, "b");
    let before = lb.observe().await;
    assert!(!before.instance.is_empty());

    lb.kill().await;
    let nothing = Batch {
        epoch: 1,
        ..Batch::default()
    };
    let down = lb.adapter().apply(&nothing).await.unwrap_err();
    assert!(down.is_retryable(), "{down}");
    let down = lb.adapter().observe().await.unwrap_err();
    assert!(down.is_retryable(), "{down}");
    lb.launch().await;

    // What drift detection sees: a new instance.
    let summary = lb.adapter().summary().await.unwrap();
    assert_ne!(
        summary.instance, before.instance,
        "a restarted LB is a new instance"
    );
    let after = lb.observe().await;
    assert_eq!(after.instance, summary.instance);
    match lb.after_restart() {
        AfterRestart::Everything => {
            assert_eq!(after.routes, before.routes);
            assert_eq!(after.upstreams, before.upstreams);
            assert_eq!(who(lb.addr(), "web.test", "/").await, "b");
        }
        AfterRestart::Nothing { listening } => {
            assert!(
                after.upstreams.is_empty() && after.routes.hosts.is_empty(),
                "{after:?}"
            );
            let answer = get(lb.addr(), "web.test", "/").await;
            if listening {
                assert_eq!(answer.map(|(s, _)| s), Ok(404), "nothing routed yet");
            } else {
                assert!(answer.is_err(), "nothing listens before the resync");
            }
        }
    }

    // What the sync layer does on a new instance: a full apply.
    lb.apply(&full).await;
    assert_eq!(who(lb.addr(), "web.test", "/").await, "b");
    let resynced = lb.observe().await;
    assert_eq!(resynced.upstreams, full.upsert_upstreams);
    assert_eq!(Some(resynced.routes), full.routes);
}

pub(crate) async fn one_dead_instance_does_not_stop_the_other(kind: Kind) {
    let mut one = Lb::start(kind).await;
    let two = Lb::start_twin(kind).await;
    let ip = |i: u8| format!("127.1.{}.{i}", kind.subnet(8));
    let a = Pod::start("a", &ip(1)).await;
    let b = Pod::start("b", &ip(2)).await;
    let first = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    };
    one.apply(&first).await;
    two.apply(&first).await;

    one.kill().await;
    let second = Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    };
    let err = one.adapter().apply(&second).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    two.apply(&second).await;
    eventually(
        "the live instance serves the new endpoint",
        SECS,
        || async {
            match who(two.addr(), "x.test", "/").await.as_str() {
                "b" => Ok(()),
                other => Err(other.to_owned()),
            }
        },
    )
    .await;

    // The dead one comes back and catches up with a full apply.
    one.launch().await;
    let full = Batch {
        routes: first.routes.clone(),
        ..second
    };
    one.apply(&full).await;
    assert_eq!(who(one.addr(), "x.test", "/").await, "b");
}

pub(crate) async fn full_resync_of_an_lb_in_sync_changes_nothing(kind: Kind) {
    let lb = Lb::start(kind).await;
    let subnet = kind.subnet(9);
    let a = Pod::start("a", &format!("127.1.{subnet}.1")).await;
    let b = Pod::start("b", &format!("127.1.{subnet}.2")).await;
    let full = Batch {
        epoch: 7,
        upsert_upstreams: vec![
            upstream("web", vec![a.active(3), b.draining()]),
            upstream("api", vec![b.active(1)]),
        ],
        routes: Some(table(
            vec![
                (
                    "web.test",
                    vhost(
                        &[
                            (PathMatch::prefix("/"), "web"),
                            (PathMatch::exact("/api"), "api"),
                        ],
                        Some("web"),
                    ),
                ),
                (
                    "*.wild.test",
                    vhost(&[(PathMatch::prefix("/"), "api")], None),
                ),
            ],
            Some("web"),
        )),
        ..Batch::default()
    };
    lb.apply(&full).await;
    let worker = lb.worker().await;
    let (before, per_server) = lb.fingerprint().await;
    let a_ip = a.addr.ip().to_string();
    assert!(before.iter().any(|l| l.contains(&a_ip)), "{before:?}");
    assert!(before.iter().any(|l| l.contains("web.test")), "{before:?}");

    // The same adapter pushes everything again (the sync layer's full re-sync).
    lb.apply(&full).await;
    assert_eq!(lb.fingerprint().await.0, before, "same adapter, same state");
    // A new adapter knows nothing (a restarted controller): it must read, not rewrite.
    let fresh = lb.fresh_adapter();
    let summary = fresh.apply(&full).await.unwrap();
    assert_eq!(
        lb.fingerprint().await.0,
        before,
        "new adapter, same epoch, same state"
    );
    let as_summary = |s: LbState| StateSummary {
        instance: s.instance,
        generation: s.generation,
        epoch: s.epoch,
    };
    assert_eq!(summary, as_summary(fresh.observe().await.unwrap()));
    if lb.keeps_generation() {
        assert_eq!(summary, as_summary(lb.observe().await), "one generation");
    }
    assert_eq!(lb.worker().await, worker, "no reload");

    // A real change still goes through, and only where it is.
    let mut changed = full.clone();
    changed.upsert_upstreams[0] = upstream("web", vec![a.active(3), b.active(1)]);
    fresh.apply(&changed).await.unwrap();
    let after = lb.fingerprint().await.0;
    assert_ne!(after, before, "the change is in the LB");
    if per_server {
        let differs: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
        assert_eq!(differs.len(), 1, "only b's server changed: {differs:?}");
        assert!(differs[0].contains(&b.addr.ip().to_string()), "{differs:?}");
    }
    eventually("the change is served", SECS, || async {
        let s = spread(lb.addr(), "web.test", "/", 12).await;
        (s.keys().all(|k| k == "a" || k == "b") && s.contains_key("b"))
            .then_some(())
            .ok_or_else(|| format!("{s:?}"))
    })
    .await;
}
