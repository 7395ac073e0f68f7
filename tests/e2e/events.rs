//! The Normal `Sync` Event users expect on an Ingress (issue 12, fault 9): only once
//! every LB holds it — not when the controller merely accepted it — and again for each
//! change of its spec.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use podgate::demo::{Lab, pods};
use podgate_sim::Gvr;
use podgate_sim::objects::ingress;

use crate::front_lb;

const WAIT: Duration = Duration::from_secs(20);

fn sync_events(lab: &Lab, namespace: &str) -> Vec<serde_json::Value> {
    let events = Gvr::new("events.k8s.io", "v1", "events");
    lab.sim("idc")
        .list(&events, Some(namespace))
        .into_iter()
        .filter(|e| e["reason"] == "Sync")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_gets_a_sync_event_once_every_lb_holds_it_and_again_when_it_changes() {
    // An LB that is down (503 on every batch) until the gate opens.
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let down = move |path: &str, _: &[u8]| {
        (path == "/v1/batch" && !gate.load(Ordering::SeqCst))
            .then_some((503, r#"{"error":"restarting"}"#))
    };
    let lab = front_lb::lab(down).await;

    let port = pods::free_port().await.unwrap();
    let shop = pods::start_many("idc", "web", 51, 1, 2, port)
        .await
        .unwrap();
    lab.deploy("shop", "shop.example.com", &[("idc", &shop)])
        .unwrap();

    // Accepted (its status written) while the LB still refuses: no Event yet.
    let ingresses = Gvr::new("networking.k8s.io", "v1", "ingresses");
    lab.eventually("the Ingress's status", WAIT, || async {
        let ing = lab.sim("idc").get(&ingresses, Some("shop"), "web")?;
        ing["status"]["loadBalancer"]["ingress"][0]["ip"]
            .is_string()
            .then_some(())
    })
    .await
    .unwrap();
    // Consistently, for three of the announcer's passes and two failed pushes.
    let since = std::time::Instant::now();
    lab.eventually("three seconds without a Sync Event", WAIT, || async {
        assert_eq!(sync_events(&lab, "shop"), Vec::<serde_json::Value>::new());
        let state = lab.admin_state().await.ok()?;
        let failures = state["targets"][0]["failures"].as_u64()?;
        (failures >= 2 && since.elapsed() >= Duration::from_secs(3)).then_some(())
    })
    .await
    .unwrap();

    // The LB comes back: the Event follows, and the app serves.
    open.store(true, Ordering::SeqCst);
    let event = lab
        .eventually("a Sync Event", WAIT, || async {
            sync_events(&lab, "shop").into_iter().next()
        })
        .await
        .unwrap();
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "Ingress");
    assert_eq!(event["regarding"]["name"], "web");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.starts_with("Programmed into every LB: proxy"),
        "{note}"
    );
    let ing = lab.sim("idc").get(&ingresses, Some("shop"), "web").unwrap();
    assert_eq!(
        event["regarding"]["uid"], ing["metadata"]["uid"],
        "kubectl describe finds Events by uid"
    );
    let (status, _) = lab.get("shop.example.com", "/").await.unwrap();
    assert_eq!(status, 200);

    // A change of its spec is announced again, once it is live.
    lab.apply(
        "idc",
        &ingress("shop", "web")
            .route("shop.example.com", "Prefix", "/", "web", 80)
            .route("www.shop.example.com", "Prefix", "/", "web", 80)
            .build(),
    )
    .unwrap();
    // Announced as the same Event, seen twice (`kubectl describe`: "x2 over …").
    lab.eventually("the Sync Event seen twice", WAIT, || async {
        let events = sync_events(&lab, "shop");
        (events.first()?["series"]["count"] == 2).then_some(())
    })
    .await
    .unwrap();
    let (status, _) = lab.get("www.shop.example.com", "/").await.unwrap();
    assert_eq!(status, 200, "the Event came before the change was live");
    assert_eq!(sync_events(&lab, "shop").len(), 1, "one Event, in a series");
}
