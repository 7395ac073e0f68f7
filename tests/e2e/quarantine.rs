//! A company LB with stricter validation than podgate's (issue 12, fault 5): it refuses
//! every batch that carries one upstream. Everything else must land, and the refused
//! upstream must be quarantined and reported — admin view, metric, Warning Event —
//! rather than freeze the target.

use std::time::Duration;

use podgate::demo::pods;
use podgate_sim::Gvr;

use crate::front_lb;

const WAIT: Duration = Duration::from_secs(20);

/// Whether a batch upserts or patches an upstream of the namespace `refused`.
fn names_refused(body: &[u8]) -> bool {
    let batch: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    ["upsert_upstreams", "patch_upstreams"].iter().any(|field| {
        batch[field]
            .as_array()
            .is_some_and(|ups| ups.iter().any(|u| u["key"]["namespace"] == "refused"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_the_lb_refuses_is_quarantined_and_reported_and_the_rest_lands() {
    let refuse = |path: &str, body: &[u8]| {
        (path == "/v1/batch" && names_refused(body)).then_some((
            400,
            r#"{"error":"upstream refused/web:80 fails the company's validation"}"#,
        ))
    };
    let lab = front_lb::lab(refuse).await;

    // The refused app first; then another app, whose pods must all serve.
    let port = pods::free_port().await.unwrap();
    let refused = pods::start_many("idc", "web", 41, 1, 1, port)
        .await
        .unwrap();
    lab.deploy("refused", "refused.example.com", &[("idc", &refused)])
        .unwrap();
    lab.deploy_pods("shop", "shop.example.com", 43, 2)
        .await
        .unwrap();

    let state = lab
        .eventually("the target quarantined", WAIT, || async {
            let state = lab.admin_state().await.ok()?;
            (state["targets"][0]["state"] == "quarantined").then_some(state)
        })
        .await
        .unwrap();
    let quarantined = &state["targets"][0]["quarantined"];
    assert_eq!(quarantined.as_array().unwrap().len(), 1, "{quarantined}");
    assert_eq!(quarantined[0]["kind"], "upstream");
    assert_eq!(quarantined[0]["name"], "refused/web:80");
    assert!(
        quarantined[0]["error"]
            .as_str()
            .unwrap()
            .contains("company's validation"),
        "{quarantined}"
    );
    let url = format!("http://{}/metrics", lab.controller.admin_addr);
    let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("podgate_lb_quarantined_items{") && l.contains("kind=\"upstream\""))
        .unwrap_or_else(|| panic!("no quarantine metric in\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");

    // A Warning Event on the Service that caused it.
    let events = Gvr::new("events.k8s.io", "v1", "events");
    let event = lab
        .eventually("a Warning Event", WAIT, || async {
            lab.sim("idc")
                .list(&events, Some("refused"))
                .into_iter()
                .find(|e| e["reason"] == "LbRejected")
        })
        .await
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Service");
    assert_eq!(event["regarding"]["name"], "web");

    // Later changes still land: a second shop pod set replaces the first.
    lab.deploy_pods("shop", "shop.example.com", 45, 1)
        .await
        .unwrap();
}
