//! `kube::runtime::watcher` works unchanged against the simulated API server, and
//! survives its faults: dropped watches, expired history (410 → relist), a stopped
//! and restarted server, forced 5xx answers.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use podgate_sim::{Gvr, SimCluster, SimOptions};
use serde_json::json;

/// Generous: only reached when the behaviour under test is broken.
const DEADLINE: Duration = Duration::from_secs(20);

fn cm(name: &str, app: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default", "labels": { "app": app } },
        "data": { "v": value }
    }))
    .unwrap()
}

/// A compact view of an event: kind and object name (and the `v` datum).
fn show(e: &Event<ConfigMap>) -> String {
    let name = |c: &ConfigMap| {
        let v = c
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .cloned()
            .unwrap_or_default();
        format!("{}={v}", c.metadata.name.clone().unwrap_or_default())
    };
    match e {
        Event::Init => "Init".into(),
        Event::InitApply(c) => format!("InitApply {}", name(c)),
        Event::InitDone => "InitDone".into(),
        Event::Apply(c) => format!("Apply {}", name(c)),
        Event::Delete(c) => format!("Delete {}", name(c)),
    }
}

/// The next successful watcher event (errors are the watcher's business: it retries).
async fn next<S>(stream: &mut S) -> String
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    next_after_errors(stream).await.0
}

/// The next successful watcher event, and how many errors the watcher reported first.
async fn next_after_errors<S>(stream: &mut S) -> (String, usize)
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let mut errors = 0;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.next().await {
                Some(Ok(e)) => return show(&e),
                Some(Err(_)) => errors += 1,
                None => return "end of stream".to_owned(),
            }
        }
    })
    .await;
    (
        found.unwrap_or_else(|_| "no event before the deadline".to_owned()),
        errors,
    )
}

async fn next_n<S>(stream: &mut S, n: usize) -> Vec<String>
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(stream).await);
    }
    out
}

async fn setup() -> (SimCluster, Api<ConfigMap>) {
    let sim = SimCluster::start("watch", SimOptions::default())
        .await
        .unwrap();
    sim.apply(&cm("a", "web", "1")).unwrap();
    let api = Api::namespaced(sim.client().unwrap(), "default");
    (sim, api)
}

#[tokio::test]
async fn watcher_sees_add_modify_delete() {
    let (_sim, api) = setup().await;
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    api.create(&PostParams::default(), &cm("b", "web", "1"))
        .await
        .unwrap();
    let mut a = api.get("a").await.unwrap();
    a.data = Some([("v".to_owned(), "2".to_owned())].into());
    api.replace("a", &PostParams::default(), &a).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Apply b=1", "Apply a=2", "Delete b=1"]
    );
}

#[tokio::test]
async fn watch_label_selector_turns_relabels_into_add_and_delete() {
    let (sim, api) = setup().await;
    let config = watcher::Config::default().labels("app=web");
    let mut events = watcher(api.clone(), config).boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    sim.apply(&cm("other", "api", "1")).unwrap();
    sim.apply(&cm("a", "api", "2")).unwrap(); // leaves the selection
    sim.apply(&cm("other", "web", "3")).unwrap(); // enters it
    assert_eq!(
        next_n(&mut events, 2).await,
        ["Delete a=1", "Apply other=3"]
    );
}

#[tokio::test]
async fn watcher_resumes_after_dropped_watches_without_relisting() {
    let (sim, api) = setup().await;
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    // One event through the open watch, so that the drop hits an open watch.
    sim.apply(&cm("b", "web", "1")).unwrap();
    assert_eq!(next(&mut events).await, "Apply b=1");
    let before = sim.stats();
    assert_eq!(before.open_watches, 1);
    sim.drop_watches();
    sim.apply(&cm("c", "web", "1")).unwrap();
    assert_eq!(
        next(&mut events).await,
        "Apply c=1",
        "resumed from its version: no Init"
    );
    let after = sim.stats();
    assert!(
        after.watches > before.watches,
        "the watch was dropped and reopened: {before:?} → {after:?}"
    );
    assert_eq!(after.lists, before.lists, "no relist");
    sim.drop_watches();
    sim.delete(&Gvr::of::<ConfigMap>(), Some("default"), "b")
        .unwrap();
    assert_eq!(next(&mut events).await, "Delete b=1");
}

#[tokio::test]
async fn watcher_relists_after_expired_history() {
    let (sim, api) = setup().await;
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    sim.apply(&cm("b", "web", "1")).unwrap();
    assert_eq!(next(&mut events).await, "Apply b=1");
    sim.expire_history();
    let (event, errors) = next_after_errors(&mut events).await;
    assert_eq!(
        (event.as_str(), errors),
        ("Init", 1),
        "one ERROR 410 event, then a relist"
    );
    assert_eq!(
        next_n(&mut events, 3).await,
        ["InitApply a=1", "InitApply b=1", "InitDone"]
    );
    sim.apply(&cm("c", "web", "1")).unwrap();
    assert_eq!(next(&mut events).await, "Apply c=1");
}

#[tokio::test]
async fn watcher_relists_when_history_overflows_while_disconnected() {
    let sim = SimCluster::start(
        "small",
        SimOptions {
            history: 3,
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    sim.apply(&cm("a", "web", "1")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sim.client().unwrap(), "default");
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    sim.stop().await;
    for v in 2..10 {
        sim.apply(&cm("a", "web", &v.to_string())).unwrap();
    }
    sim.restart().await.unwrap();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=9", "InitDone"]
    );
}

#[tokio::test]
async fn watcher_recovers_after_stop_and_restart_on_the_same_address() {
    let (sim, api) = setup().await;
    let addr = sim.addr();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    sim.stop().await;
    assert!(
        api.get("a").await.is_err(),
        "a stopped server answers nothing"
    );
    sim.apply(&cm("b", "web", "1")).unwrap();
    sim.restart().await.unwrap();
    assert_eq!(sim.addr(), addr);
    assert_eq!(next(&mut events).await, "Apply b=1");
    assert_eq!(
        api.get("a").await.unwrap().metadata.name.as_deref(),
        Some("a"),
        "objects kept"
    );
}

#[tokio::test]
async fn forced_failures_last_until_cleared() {
    let (sim, api) = setup().await;
    sim.fail_with(500);
    let err = api.get("a").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500),
        "{err:?}"
    );
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let first = tokio::time::timeout(DEADLINE, events.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(Event::Init))), "{first:?}");
    assert!(
        matches!(events.next().await, Some(Err(_))),
        "the initial list fails while failing"
    );
    sim.clear_failure();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply a=1", "InitDone"]
    );
    api.get("a").await.unwrap();
}

#[tokio::test]
async fn watcher_pages_its_initial_list_and_any_semantic_works() {
    let (sim, api) = setup().await;
    for name in ["b", "c", "d", "e"] {
        sim.apply(&cm(name, "web", "1")).unwrap();
    }
    let all = [
        "Init",
        "InitApply a=1",
        "InitApply b=1",
        "InitApply c=1",
        "InitApply d=1",
        "InitApply e=1",
        "InitDone",
    ];
    let before = sim.stats().lists;
    let mut paged = watcher(api.clone(), watcher::Config::default().page_size(2)).boxed();
    assert_eq!(next_n(&mut paged, 7).await, all);
    assert_eq!(sim.stats().lists - before, 3, "three pages of at most two");

    // kube leaves resourceVersion=0 out when it pages; without a page size it is sent.
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    let mut any = watcher(api.clone(), config).boxed();
    assert_eq!(next_n(&mut any, 7).await, all);
    sim.apply(&cm("f", "web", "1")).unwrap();
    assert_eq!(next(&mut any).await, "Apply f=1");
}
