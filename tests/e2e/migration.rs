//! Migrations end to end: `podgate migrate shop/web --to tke` ramps live traffic from
//! idc to tke in steps, measured at every step; the ramp is kept in the weights
//! ConfigMap, so it stands still without a controller and resumes after a restart; it
//! pauses while tke has no Active endpoint (or is held down after recovering);
//! `--cancel` stops it where it stands; `--pause` holds it until `--resume`.

use crate::weights_harness;

use std::time::Duration;

use podgate::controller::{self, RunOptions};
use serde_json::Value;
use weights_harness::{APP, SAMPLE, Scenario, TOLERANCE, WAIT, endpoints, tke_percent};

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The migration as the controller's `/v1/state` shows it.
async fn migration(s: &Scenario) -> Option<Value> {
    let state = s.lab.admin_state().await.ok()?;
    let m = state["weights"]["migrations"][APP].clone();
    (!m.is_null()).then_some(m)
}

fn percent(m: &Value) -> u64 {
    m["percent"].as_u64().unwrap_or(0)
}

/// Starts from everything in idc: `shop/web` weights idc=100, tke=0.
async fn all_in_idc(subnet: u8) -> Scenario {
    let s = Scenario::start(subnet).await;
    s.client()
        .set_weights(&args(&["idc=100", "tke=0"]), Some(APP))
        .await
        .expect("set");
    s.expect_tke_share(0.0).await;
    s
}

/// Waits until the migration's percentage is at least `at_least`.
async fn reaches(s: &Scenario, at_least: u64) -> Value {
    s.lab
        .eventually(&format!("migration at {at_least}%"), WAIT, || async {
            migration(s).await.filter(|m| percent(m) >= at_least)
        })
        .await
        .expect("ramp progresses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_is_measured_at_every_step() {
    let s = all_in_idc(20).await;
    s.client()
        .migrate(APP, "tke", 25, "2s")
        .await
        .expect("podgate migrate shop/web --to tke --step 25 --every 2s");

    for step in [25_u64, 50, 75, 100] {
        // Measure only while the controller stays at this step the whole time.
        let measured = s
            .lab
            .eventually(&format!("a measurement at {step}%"), WAIT, || async {
                let before = migration(&s).await?;
                if percent(&before) != step {
                    return None;
                }
                let split = s.lab.split(weights_harness::HOST, SAMPLE).await.ok()?;
                let after = migration(&s).await?;
                (percent(&after) == step).then_some((split, after))
            })
            .await;
        let (split, m) = measured.unwrap_or_else(|e| panic!("step {step}%: {e}"));
        #[allow(clippy::cast_precision_loss)]
        let expected = step as f64;
        let got = tke_percent(&split);
        assert!(
            split.failed == 0 && (got - expected).abs() <= TOLERANCE,
            "step {step}%: tke got {got:.1}% ({split:?})"
        );
        let want_state = if step == 100 { "done" } else { "running" };
        assert_eq!(m["state"], want_state, "{m}");
    }
    let split = s
        .lab
        .split(weights_harness::HOST, SAMPLE)
        .await
        .expect("split");
    assert_eq!((split.cluster("idc"), split.failed), (0, 0), "{split:?}");
    assert_eq!(s.configmap()["app.shop.web"], "idc=0,tke=100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_stands_still_without_a_controller_and_resumes_after_restart() {
    let mut s = all_in_idc(22).await;
    s.client()
        .migrate(APP, "tke", 10, "300ms")
        .await
        .expect("migrate");
    reaches(&s, 30).await;

    // Stop the controller: an idle one (other ConfigMap, no LB) takes its place.
    let mut idle = s.lab.config.clone();
    idle.targets.clear();
    idle.weights.name = "unused".to_owned();
    s.lab.controller = controller::start(&idle, RunOptions::default())
        .await
        .expect("idle controller");
    let stored = s.configmap();
    // A negative check: three intervals pass and nobody steps.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(s.configmap(), stored, "no controller, no step");
    let stored: Value = serde_json::from_str(stored["migration.shop.web"].as_str().unwrap())
        .expect("migration JSON");
    let stood = percent(&stored);
    assert!((30..100).contains(&stood), "{stored}");
    // The LB keeps serving the last step's split meanwhile.
    let split = s
        .lab
        .split(weights_harness::HOST, SAMPLE)
        .await
        .expect("split");
    assert_eq!(split.failed, 0);

    s.restart_controller().await;
    let first = migration(&s).await.expect("migration after restart");
    assert!(
        percent(&first) >= stood,
        "resumed from {stood}, not from the start: {first}"
    );
    let seen = std::sync::Mutex::new(vec![percent(&first)]);
    s.lab
        .eventually("the ramp completes", WAIT, || async {
            let m = migration(&s).await?;
            seen.lock().unwrap().push(percent(&m));
            (m["state"] == "done").then_some(())
        })
        .await
        .expect("done");
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "never backwards: {seen:?}"
    );
    assert!(
        seen.first() < seen.last(),
        "the new controller stepped: {seen:?}"
    );
    s.expect_tke_share(100.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_pauses_while_the_target_has_no_active_endpoint() {
    let s = all_in_idc(24).await;
    s.client()
        .migrate(APP, "tke", 10, "200ms")
        .await
        .expect("migrate");
    reaches(&s, 20).await;

    // tke scales to zero: the ramp pauses, idc serves everything, nothing fails.
    s.lab
        .apply("tke", &endpoints("tke", &[]))
        .expect("scale tke to zero");
    let paused = s
        .lab
        .eventually("paused", WAIT, || async {
            migration(&s).await.filter(|m| m["state"] == "paused")
        })
        .await
        .expect("pauses");
    assert!(
        paused["paused"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("tke has no Active endpoint")),
        "{paused}"
    );
    let split = s.expect_tke_share(0.0).await;
    assert_eq!(split.failed, 0);
    // A negative check: five intervals pass and the percentage stands.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = migration(&s).await.expect("migration");
    assert_eq!(
        (percent(&still), &still["state"]),
        (percent(&paused), &"paused".into())
    );
    assert!(percent(&still) < 100);

    // tke is back, but held down (the Lab's hold_down is 10 s): still paused, saying so.
    s.lab
        .apply("tke", &endpoints("tke", &s.tke))
        .expect("tke back");
    let held = s
        .lab
        .eventually("paused by the hold-down", WAIT, || async {
            migration(&s).await.filter(|m| {
                m["paused"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("held down"))
            })
        })
        .await
        .expect("held down");
    assert_eq!(percent(&held), percent(&paused), "{held}");
    // Then the ramp goes on to the end.
    s.lab
        .eventually("the ramp completes", WAIT, || async {
            migration(&s).await.filter(|m| m["state"] == "done")
        })
        .await
        .expect("done");
    s.expect_tke_share(100.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_ramp_where_it_stands() {
    let s = all_in_idc(26).await;
    let client = s.client();
    client
        .migrate(APP, "tke", 10, "300ms")
        .await
        .expect("migrate");
    let err = client.migrate(APP, "tke", 10, "300ms").await.unwrap_err();
    assert!(err.to_string().contains("already migrating"), "{err}");
    let err = client
        .set_weights(&args(&["idc=1"]), Some(APP))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cancel the migration first"),
        "{err}"
    );
    reaches(&s, 20).await;

    let view = client.cancel_migration(APP).await.expect("cancel");
    assert!(view["migrations"].get(APP).is_none(), "{view}");
    let weights = view["apps"][APP].as_str().expect("weights stay").to_owned();
    // A negative check: three intervals pass and the weights stand.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let data = s.configmap();
    assert_eq!(data["app.shop.web"], weights.as_str());
    assert!(data.get("migration.shop.web").is_none(), "{data}");
    let tke: f64 = weights
        .split(',')
        .find_map(|w| w.strip_prefix("tke="))
        .and_then(|w| w.parse().ok())
        .expect("tke weight");
    s.expect_tke_share(tke).await;
    assert!(
        client.cancel_migration(APP).await.is_err(),
        "nothing left to cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_and_resumes_the_ramp() {
    let s = all_in_idc(28).await;
    let client = s.client();
    client
        .migrate(APP, "tke", 10, "300ms")
        .await
        .expect("migrate");
    reaches(&s, 10).await;
    let view = client
        .pause_migration(APP, true)
        .await
        .expect("podgate migrate shop/web --pause");
    assert_eq!(view["migrations"][APP]["held"], true, "{view}");
    let paused = s
        .lab
        .eventually("paused by an operator", WAIT, || async {
            migration(&s).await.filter(|m| {
                m["state"] == "paused" && m["paused"]["reason"] == "paused by an operator"
            })
        })
        .await
        .unwrap();
    // A negative check: three intervals pass and the ramp stands.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let still = migration(&s).await.unwrap();
    assert_eq!(percent(&still), percent(&paused), "{still}");
    assert!(
        s.configmap()["migration.shop.web"]
            .as_str()
            .unwrap()
            .contains("\"held\":true")
    );

    client
        .pause_migration(APP, false)
        .await
        .expect("podgate migrate shop/web --resume");
    reaches(&s, percent(&paused) + 10).await;
    let err = client
        .pause_migration("shop/nothing", true)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no migration of shop/nothing"),
        "{err}"
    );
}
