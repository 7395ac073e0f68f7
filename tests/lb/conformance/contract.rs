//! The contract's finer points: patches apply to what the LB holds, podgate never
//! touches what it did not register, and a stale epoch is fenced (by the adapter, and
//! by the LB itself where it fences: `LbAdapter::fences`).

use super::under_test::{Kind, Lb, Stage};
use crate::harness::{Pod, key, spread, table, upstream, vhost, who};

use podgate::lb::LbError;
use podgate_core::model::{Batch, PathMatch, UpstreamPatch};

/// A patch (`Batch::patch_upstreams`) is applied to what the adapter holds; one for an
/// upstream it does not hold is refused and changes nothing.
pub(crate) async fn applies_patches_to_what_it_holds(kind: Kind) {
    let lb = Lb::start(kind).await;
    let subnet = kind.subnet(10);
    let a = Pod::start("a", &format!("127.1.{subnet}.1")).await;
    let b = Pod::start("b", &format!("127.1.{subnet}.2")).await;
    let both = upstream("web", vec![a.active(1), b.active(1)]);
    lb.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![both.clone()],
        routes: Some(table(
            vec![(
                "patch.test",
                vhost(&[(PathMatch::prefix("/"), "web")], None),
            )],
            None,
        )),
        ..Batch::default()
    })
    .await;
    let only_a = upstream("web", vec![a.active(1)]);
    let patch = UpstreamPatch::between(&both, &only_a).expect("a patch");
    lb.apply(&Batch {
        epoch: 1,
        patch_upstreams: vec![patch.clone()],
        ..Batch::default()
    })
    .await;
    let got = spread(lb.addr(), "patch.test", "/", 10).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a"], "{got:?}");
    assert_eq!(lb.observe().await.upstreams, vec![only_a]);
    let stranger = UpstreamPatch {
        key: key("nobody"),
        ..patch
    };
    let refused = lb
        .adapter()
        .apply(&Batch {
            epoch: 1,
            patch_upstreams: vec![stranger],
            ..Batch::default()
        })
        .await;
    assert!(matches!(refused, Err(LbError::Rejected(_))), "{refused:?}");
    assert_eq!(who(lb.addr(), "patch.test", "/").await, "a");
}

/// What another owner or the operator put into a shared LB is neither reported as
/// podgate's nor changed when podgate removes all of its own.
pub(crate) async fn never_touches_what_podgate_did_not_register(kind: Kind) {
    let lb = Lb::start(kind).await;
    let subnet = kind.subnet(11);
    let a = Pod::start("a", &format!("127.1.{subnet}.1")).await;
    let theirs = Pod::start("theirs", &format!("127.1.{subnet}.9")).await;
    lb.plant_foreign(&theirs, Stage::BeforePodgate).await;
    let web = upstream("web", vec![a.active(1)]);
    lb.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![web.clone()],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    lb.plant_foreign(&theirs, Stage::BesidePodgate).await;
    assert_eq!(who(lb.addr(), "x.test", "/").await, "a");
    lb.foreign_untouched().await.unwrap();

    // observe reports podgate's own as they were pushed, nothing added to them.
    let mine: Vec<_> = lb
        .observe()
        .await
        .upstreams
        .into_iter()
        .filter(|u| u.key != key("theirs"))
        .collect();
    assert_eq!(mine, vec![web]);

    // Removing every endpoint leaves theirs in place.
    lb.apply(&Batch {
        epoch: 1,
        upsert_upstreams: vec![upstream("web", vec![])],
        ..Batch::default()
    })
    .await;
    lb.foreign_untouched().await.unwrap();
    let left = lb.podgate_servers().await;
    assert!(left.is_empty(), "{left:?}");
}

/// A batch with an older epoch than one the LB accepted is fenced, with the newer
/// epoch in the error, and changes nothing. Where the LB itself fences, so does it for
/// an adapter that never saw the newer epoch (a controller cut off from the Lease).
pub(crate) async fn fences_old_epochs(kind: Kind) {
    let lb = Lb::start(kind).await;
    let subnet = kind.subnet(12);
    let a = Pod::start("a", &format!("127.1.{subnet}.1")).await;
    let b = Pod::start("b", &format!("127.1.{subnet}.2")).await;
    lb.apply(&Batch {
        epoch: 5,
        upsert_upstreams: vec![upstream("web", vec![a.active(1)])],
        routes: Some(table(vec![], Some("web"))),
        ..Batch::default()
    })
    .await;
    assert_eq!(who(lb.addr(), "x.test", "/").await, "a");
    let stale = Batch {
        epoch: 4,
        upsert_upstreams: vec![upstream("web", vec![b.active(1)])],
        ..Batch::default()
    };
    let err = lb.adapter().apply(&stale).await.unwrap_err();
    assert!(matches!(err, LbError::Fenced(5)), "{err}");
    if lb.adapter().fences() {
        let err = lb.fresh_adapter().apply(&stale).await.unwrap_err();
        assert!(matches!(err, LbError::Fenced(5)), "{err}");
    }
    assert_eq!(who(lb.addr(), "x.test", "/").await, "a", "nothing changed");
    assert_eq!(lb.observe().await.epoch, 5);
}
