//! The sync worker against a scripted in-memory LB: coalescing, retry with backoff,
//! full resync after an LB restart. (Real LBs are driven in the end-to-end tests; this
//! one scripts failures that a real LB cannot produce on demand.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use podgate::hub::{Cause, Desired};
use podgate::lb::{BoxFuture, LbAdapter, LbError};
use podgate::sync::{Audit, SyncConfig, TargetState, Worker};
use podgate_core::index::{Index, IndexConfig, Input};
use podgate_core::model::ClusterName;
use podgate_core::model::{Batch, LbState, StateSummary};
use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};
use tokio::sync::Semaphore;

fn idc() -> ClusterName {
    ClusterName::new("idc")
}

/// An Index for the cluster idc with podgate's IngressClass as the default class.
fn index() -> Index {
    let mut index = Index::new(IndexConfig {
        clusters: vec![(idc(), 100)],
        ..IndexConfig::default()
    });
    index.apply(
        &idc(),
        default_class(ingress_class("podgate", "podgate.io/ingress-controller")),
    );
    index
}

#[derive(Default)]
struct Script {
    batches: Vec<Batch>,
    /// Answers for the next applies; empty → success.
    failures: Vec<LbError>,
    /// Every apply, answered or refused.
    attempts: usize,
    /// Refuses (400) every batch that upserts or patches this Service's upstream, as a
    /// company LB with stricter validation would.
    refuse: Option<&'static str>,
    instance: String,
    generation: u64,
}

#[derive(Clone)]
struct ScriptedLb {
    script: Arc<Mutex<Script>>,
    /// Each apply takes a permit: tests hold pushes "in flight".
    gate: Arc<Semaphore>,
    /// Answers `accepts_patches`.
    patches: bool,
}

impl LbAdapter for ScriptedLb {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn apply<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<StateSummary, LbError>> {
        Box::pin(async move {
            self.gate.acquire().await.unwrap().forget();
            let mut s = self.script.lock().unwrap();
            s.attempts += 1;
            if !s.failures.is_empty() {
                return Err(s.failures.remove(0));
            }
            if let Some(bad) = s.refuse {
                let named = batch.upsert_upstreams.iter().map(|u| &u.key);
                let patched = batch.patch_upstreams.iter().map(|p| &p.key);
                if named.chain(patched).any(|k| &*k.service == bad) {
                    return Err(LbError::Rejected(format!(
                        "400 Bad Request: upstream shop/{bad} is invalid"
                    )));
                }
            }
            s.batches.push(batch.clone());
            s.generation += 1;
            Ok(StateSummary {
                instance: s.instance.clone(),
                generation: s.generation,
                epoch: batch.epoch,
            })
        })
    }

    fn accepts_patches(&self) -> bool {
        self.patches
    }

    fn observe(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        Box::pin(async move {
            let s = self.script.lock().unwrap();
            Ok(LbState {
                instance: s.instance.clone(),
                generation: s.generation,
                ..LbState::default()
            })
        })
    }
}

fn setup() -> (Arc<Desired>, ScriptedLb, Arc<Audit>) {
    let mut index = index();
    index.apply(
        &idc(),
        ingress("shop", "web").route("shop.com", "Prefix", "/", "web", 80),
    );
    index.apply(&idc(), service("shop", "web").port("http", 80));
    let desired = Desired::new(index);
    let lb = ScriptedLb {
        script: Arc::new(Mutex::new(Script {
            instance: "a".into(),
            ..Script::default()
        })),
        gate: Arc::new(Semaphore::new(0)),
        patches: false,
    };
    (desired, lb, Arc::new(Audit::new(100)))
}

fn flip(desired: &Desired, addr: &str) {
    let object = slice("shop", "web-1", "web").port("http", 8080).ready(addr);
    let input = Input::Apply {
        cluster: idc(),
        object: object.into(),
    };
    desired.apply(&Cause::Test("test"), input);
}

async fn wait_for(lb: &ScriptedLb, n: usize) -> Vec<Batch> {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let batches = lb.script.lock().unwrap().batches.clone();
        if batches.len() >= n {
            return batches;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} batches",
            batches.len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn first_push_is_full_and_changes_during_a_push_go_out_together() {
    let (desired, lb, audit) = setup();
    let worker = Worker::new(
        Box::new(lb.clone()),
        desired.clone(),
        audit,
        SyncConfig::default(),
        7,
    );
    tokio::spawn(worker.run());
    lb.gate.add_permits(1);
    let b = wait_for(&lb, 1).await;
    assert!(
        b[0].routes.is_some() && b[0].upsert_upstreams.len() == 1,
        "full sync first"
    );
    assert_eq!(b[0].epoch, 7);

    // Three changes while the next push is held: they go out as one batch.
    flip(&desired, "10.0.0.1");
    tokio::task::yield_now().await;
    flip(&desired, "10.0.0.2");
    flip(&desired, "10.0.0.3");
    lb.gate.add_permits(10);
    wait_for(&lb, 2).await;
    // The first flip may have been taken alone before the others arrived; the other
    // two must travel together.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let total = lb.script.lock().unwrap().batches.len();
    assert!(total <= 3, "changes coalesced: {total} batches");
    let last = lb.script.lock().unwrap().batches.last().unwrap().clone();
    assert_eq!(
        last.upsert_upstreams[0].endpoints[0].address.to_string(),
        "10.0.0.3"
    );
    assert!(last.routes.is_none(), "no route change, no route push");
}

#[tokio::test(start_paused = true)]
async fn a_failed_push_is_retried_with_the_same_changes() {
    let (desired, lb, audit) = setup();
    lb.script.lock().unwrap().failures = vec![
        LbError::Transient("down".into()),
        LbError::Transient("down".into()),
    ];
    let worker = Worker::new(
        Box::new(lb.clone()),
        desired.clone(),
        audit.clone(),
        SyncConfig::default(),
        1,
    );
    let status = worker.status();
    tokio::spawn(worker.run());
    lb.gate.add_permits(100);
    let b = wait_for(&lb, 1).await;
    assert!(b[0].routes.is_some(), "the full sync survived two failures");
    assert_eq!(status.lock().state, TargetState::InSync);
    assert_eq!(status.lock().failures, 2);
    let results: Vec<String> = audit.entries().into_iter().map(|e| e.result).collect();
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[2], "ok");
}

/// Waits until `status` is in `state`.
async fn wait_state(status: &parking_lot::Mutex<podgate::sync::TargetStatus>, state: TargetState) {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while status.lock().state != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {state:?}: {:?}",
            status.lock().state
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The Service `name` in shop with one ready pod at `addr`, routed at `/name`.
fn app(desired: &Desired, name: &str, addr: &str) {
    let objects: [podgate_core::index::Object; 3] = [
        ingress("shop", name)
            .route("shop.com", "Prefix", &format!("/{name}"), name, 80)
            .into(),
        service("shop", name).port("http", 80).into(),
        slice("shop", &format!("{name}-1"), name)
            .port("http", 8080)
            .ready(addr)
            .into(),
    ];
    for object in objects {
        let input = Input::Apply {
            cluster: idc(),
            object,
        };
        desired.apply(&Cause::Test("test"), input);
    }
}

/// Issue 12, fault 5: an LB that refuses one upstream must not freeze every later
/// change; the refused upstream is found, quarantined, and sent again only once it
/// changes.
#[tokio::test(start_paused = true)]
async fn a_refused_upstream_is_quarantined_and_everything_else_lands() {
    let (desired, lb, audit) = setup();
    app(&desired, "bad", "10.0.1.1");
    for name in ["a", "b", "c", "d", "e"] {
        app(&desired, name, "10.0.2.1");
    }
    lb.script.lock().unwrap().refuse = Some("bad");
    let worker = Worker::new(
        Box::new(lb.clone()),
        desired.clone(),
        audit,
        SyncConfig::default(),
        1,
    );
    let status = worker.status();
    tokio::spawn(worker.run());
    lb.gate.add_permits(1000);
    wait_state(&status, TargetState::Quarantined).await;
    let landed = |lb: &ScriptedLb| -> Vec<String> {
        let s = lb.script.lock().unwrap();
        let mut names: Vec<String> = s
            .batches
            .iter()
            .flat_map(|b| b.upsert_upstreams.iter().map(|u| u.key.service.to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(landed(&lb), ["a", "b", "c", "d", "e", "web"]);
    assert!(
        lb.script
            .lock()
            .unwrap()
            .batches
            .iter()
            .any(|b| b.routes.is_some()),
        "the route table landed too"
    );
    let quarantined = status.lock().quarantined.clone();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        serde_json::to_value(&quarantined[0]).unwrap()["name"],
        "shop/bad:80"
    );
    assert!(quarantined[0].error.contains("invalid"), "{quarantined:?}");
    // 7 upstreams and the routes: the split finds the one refused item in a few tries.
    let attempts = lb.script.lock().unwrap().attempts;
    assert!(
        attempts <= 8,
        "{attempts} attempts to find one refused item"
    );

    // Far past any backoff: nothing is re-sent by itself.
    tokio::time::sleep(Duration::from_mins(5)).await;
    assert_eq!(
        lb.script.lock().unwrap().attempts,
        attempts,
        "re-sent by itself"
    );

    // Another app's change goes out at once, without the refused upstream.
    app(&desired, "a", "10.0.2.2");
    let sent = lb.script.lock().unwrap().batches.len();
    let b = wait_for(&lb, sent + 1).await;
    let last = b.last().unwrap();
    assert_eq!(&*last.upsert_upstreams[0].key.service, "a");
    assert_eq!(last.upsert_upstreams.len(), 1, "{last:?}");
    assert_eq!(lb.script.lock().unwrap().attempts, attempts + 1);
    assert_eq!(status.lock().state, TargetState::Quarantined);

    // The refused upstream changes: it is tried again (and refused again).
    app(&desired, "bad", "10.0.1.2");
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while lb.script.lock().unwrap().attempts < attempts + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a change was not tried"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_mins(1)).await;
    assert_eq!(lb.script.lock().unwrap().attempts, attempts + 2);

    // The LB accepts it now: it leaves the quarantine with its next change.
    lb.script.lock().unwrap().refuse = None;
    app(&desired, "bad", "10.0.1.3");
    wait_state(&status, TargetState::InSync).await;
    assert!(status.lock().quarantined.is_empty());
    assert!(landed(&lb).contains(&"bad".to_owned()));
    assert_eq!(status.lock().failures_by_kind.get("rejected"), Some(&2));
}

#[tokio::test(start_paused = true)]
async fn an_lb_restart_triggers_a_full_resync() {
    let (desired, lb, audit) = setup();
    let worker = Worker::new(
        Box::new(lb.clone()),
        desired.clone(),
        audit,
        SyncConfig::default(),
        1,
    );
    tokio::spawn(worker.run());
    lb.gate.add_permits(100);
    wait_for(&lb, 1).await;
    // The LB restarts (new instance id); the next incremental push reveals it.
    lb.script.lock().unwrap().instance = "b".into();
    flip(&desired, "10.0.0.9");
    let b = wait_for(&lb, 3).await;
    assert!(b[1].routes.is_none(), "incremental push");
    assert!(b[2].routes.is_some(), "then a full resync");
}

#[tokio::test(start_paused = true)]
async fn drift_is_detected_without_any_change() {
    let (desired, lb, audit) = setup();
    let config = SyncConfig {
        drift_interval: Duration::from_secs(5),
        ..SyncConfig::default()
    };
    let worker = Worker::new(Box::new(lb.clone()), desired.clone(), audit, config, 1);
    tokio::spawn(worker.run());
    lb.gate.add_permits(100);
    wait_for(&lb, 1).await;
    // Someone else changed the LB behind podgate's back.
    lb.script.lock().unwrap().generation += 5;
    let b = wait_for(&lb, 2).await;
    assert!(b[1].routes.is_some(), "full resync after drift");
}

/// The slice of `web` with these ready and terminating addresses.
fn pods(desired: &Desired, ready: &[&str], terminating: &[&str]) {
    let s = slice("shop", "web-1", "web").port("http", 8080);
    let s = ready.iter().fold(s, |s, a| s.ready(a));
    let s = terminating.iter().fold(s, |s, a| s.terminating(a));
    let input = Input::Apply {
        cluster: idc(),
        object: s.into(),
    };
    desired.apply(&Cause::Test("test"), input);
}

#[tokio::test(start_paused = true)]
async fn one_pod_of_many_goes_as_a_patch_and_whole_again_after_a_failure() {
    let (desired, mut lb, audit) = setup();
    lb.patches = true;
    pods(&desired, &["10.0.0.1", "10.0.0.2", "10.0.0.3"], &[]);
    let worker = Worker::new(
        Box::new(lb.clone()),
        desired.clone(),
        audit,
        SyncConfig::default(),
        1,
    );
    tokio::spawn(worker.run());
    lb.gate.add_permits(100);
    let b = wait_for(&lb, 1).await;
    assert_eq!(
        b[0].upsert_upstreams[0].endpoints.len(),
        3,
        "full sync, whole"
    );

    // One pod terminates: the pod itself, and the new weights of the other two.
    pods(&desired, &["10.0.0.1", "10.0.0.3"], &["10.0.0.2"]);
    let b = wait_for(&lb, 2).await;
    assert!(b[1].upsert_upstreams.is_empty(), "{:?}", b[1]);
    let patch = &b[1].patch_upstreams[0];
    assert_eq!(patch.upsert_endpoints.len(), 1);
    assert_eq!(patch.upsert_endpoints[0].address.to_string(), "10.0.0.2");
    assert_eq!(patch.weights.len(), 2);

    // A push that fails may or may not have landed: that upstream goes whole next.
    lb.script.lock().unwrap().failures = vec![LbError::Transient("timeout".into())];
    pods(&desired, &["10.0.0.1", "10.0.0.3"], &[]);
    let b = wait_for(&lb, 3).await;
    assert!(b[2].patch_upstreams.is_empty(), "{:?}", b[2]);
    assert_eq!(b[2].upsert_upstreams[0].endpoints.len(), 2);
    // And patches again after that.
    pods(&desired, &["10.0.0.1"], &[]);
    let b = wait_for(&lb, 4).await;
    assert_eq!(
        b[3].patch_upstreams[0].remove_endpoints.len(),
        1,
        "{:?}",
        b[3]
    );
}

/// The built-in proxy closes an idle admin connection after its header-read timeout;
/// a drift check due at that very moment on the pooled connection must not count as
/// a failed push (issue 12, fault 6). Scaled down: 500 ms idle, a drift check every
/// 500 ms, for 8 s (16 checks at the edge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_checks_on_connections_the_lb_closes_when_idle_never_fail() {
    use podgate::lb::{HttpLb, HttpLbConfig};

    let (http, admin) = (crate::harness::free_addr(), crate::harness::free_addr());
    let token = format!("{:032x}", rand::random::<u128>());
    let mut config = podgate::proxy::ProxyConfig::new(http, admin, &token);
    config.timeouts.header_read_ms = 500;
    let proxy = podgate::proxy::start(config)
        .await
        .expect("start the proxy");
    let lb = HttpLb::new(
        "proxy",
        HttpLbConfig {
            base_url: format!("http://{admin}"),
            token,
            timeout: Duration::from_secs(10),
            tls: None,
        },
    )
    .unwrap();
    let (desired, _, audit) = setup();
    let worker = Worker::new(
        Box::new(lb),
        desired,
        audit,
        SyncConfig {
            drift_interval: Duration::from_millis(500),
            ..SyncConfig::default()
        },
        1,
    );
    let status = worker.status();
    let task = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let s = status.lock().clone();
    task.abort();
    proxy.shutdown().await;
    assert_eq!(
        (s.failures, s.state),
        (0, TargetState::InSync),
        "{:?}",
        s.last_error
    );
}
