//! Run-time weights end to end: two simulated clusters, a controller, the proxy and
//! real requests. Weights set through the CLI move the measured traffic split; they
//! live in the weights ConfigMap, so a second replica and a restarted controller follow
//! them; bad input changes nothing; writes need the admin token when one is configured.

use crate::weights_harness;

use podgate::cli::{AdminClient, CliError};
use podgate::controller::{self, RunOptions};
use weights_harness::{APP, Scenario, WAIT, shares};

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_weights_move_live_traffic() {
    let s = Scenario::start(10).await;
    s.expect_tke_share(50.0).await;

    // The CLI's code path (the binary's exit codes: tests/cli_weights.rs).
    let client = s.client();
    client
        .set_weights(&args(&["idc=20", "tke=80"]), None)
        .await
        .expect("podgate weights set idc=20 tke=80");
    assert_eq!(s.configmap()["global"], "idc=20,tke=80");
    s.expect_tke_share(80.0).await;

    // Per application: beats the global weights.
    let view = client
        .set_weights(&args(&["idc=90", "tke=10"]), Some(APP))
        .await
        .expect("set app weights");
    assert_eq!(view["apps"][APP], "idc=90,tke=10", "{view}");
    s.expect_tke_share(10.0).await;

    // Cleared: the global run-time weights again, then the configuration (50/50).
    client.set_weights(&[], Some(APP)).await.expect("clear app");
    s.expect_tke_share(80.0).await;
    let view = client.set_weights(&[], None).await.expect("clear global");
    assert_eq!(view["global"], serde_json::Value::Null, "{view}");
    assert_eq!(view["clusters"]["tke"], 100, "{view}");
    s.expect_tke_share(50.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_shared_by_replicas_and_survive_a_restart() {
    let mut s = Scenario::start(12).await;
    // A second replica against the same clusters (no LB of its own to keep it simple).
    let mut config = s.lab.config.clone();
    config.targets.clear();
    let replica = controller::start(&config, RunOptions::default())
        .await
        .expect("replica");

    s.client()
        .set_weights(&args(&["idc=10", "tke=90"]), None)
        .await
        .expect("set");
    s.expect_tke_share(90.0).await;
    let replica_client =
        AdminClient::new(&format!("http://{}", replica.admin_addr), None).expect("client");
    s.lab
        .eventually("the replica follows", WAIT, || async {
            let view = replica_client.get_weights().await.ok()?;
            let up = replica.desired.read(|i| {
                let key = podgate_core::model::UpstreamKey::new("shop", "web", 80.into());
                i.upstream(&key)
            })?;
            let tke = up.shares.iter().find(|(c, _)| c.as_str() == "tke")?.1;
            (view["global"] == "idc=10,tke=90" && tke == 900).then_some(())
        })
        .await
        .expect("replica converged");
    drop(replica);

    s.restart_controller().await;
    // The new controller read the ConfigMap before its first LB push: its upstream has
    // the run-time shares as soon as it exists.
    let state = s
        .lab
        .eventually(
            "the new controller sees shop/web in both clusters",
            WAIT,
            || async {
                let state = s.lab.admin_state().await.ok()?;
                let shares = shares(&state)?;
                (shares.contains("idc") && shares.contains("tke")).then_some(state)
            },
        )
        .await
        .expect("upstream");
    assert_eq!(shares(&state).as_deref(), Some("idc=100,tke=900"));
    assert_eq!(
        state["weights"]["global"], "idc=10,tke=90",
        "{}",
        state["weights"]
    );
    s.expect_tke_share(90.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weights_change_nothing() {
    let s = Scenario::start(14).await;
    let client = s.client();
    client
        .set_weights(&args(&["idc=25", "tke=75"]), None)
        .await
        .expect("set");
    let before = s.configmap();

    // Refused by the controller (the CLI checks only the syntax): unknown cluster.
    let err = client
        .set_weights(&args(&["idc=25", "tkee=75"]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CliError::Refused { status: 400, message } if message.contains("unknown cluster")),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    let err = client
        .set_weights(&args(&["idc=1"]), Some("shop/nope/x"))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");

    // Straight at the admin API: every refusal is a 400 that says why.
    let http = reqwest::Client::new();
    let base = format!("http://{}", s.lab.controller.admin_addr);
    for (method, path, body, reason) in [
        (
            "PUT",
            "/v1/weights",
            r#"{"weights": "idc=1", "bogus": 1}"#,
            "bogus",
        ),
        (
            "PUT",
            "/v1/weights",
            r#"{"weights": "idc=0,tke=0"}"#,
            "above 0",
        ),
        ("PUT", "/v1/weights", "not json", "invalid request"),
        (
            "POST",
            "/v1/migrations",
            r#"{"app": "shop/web", "to": "aws"}"#,
            "unknown cluster",
        ),
        (
            "POST",
            "/v1/migrations",
            r#"{"app": "shop/web", "to": "tke", "every": "soon"}"#,
            "every",
        ),
        (
            "POST",
            "/v1/migrations",
            r#"{"app": "shop/web", "to": "tke", "step": 0}"#,
            "step",
        ),
        ("DELETE", "/v1/migrations/shop", "", "namespace/service"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .body(body)
            .send()
            .await
            .expect("admin request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status == 400 && text.contains(reason),
            "{method} {path} {body}: {status} {text}"
        );
    }
    assert_eq!(s.configmap(), before);

    // A malformed value written straight into the ConfigMap: reported, previous stays.
    let mut data = before.clone();
    data["global"] = "idc=lots".into();
    s.lab
        .sim("idc")
        .apply_json(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "podgate-weights", "namespace": "podgate-system"},
            "data": data,
        }))
        .expect("edit ConfigMap");
    let state = s
        .lab
        .eventually("the problem is reported", WAIT, || async {
            let state = s.lab.admin_state().await.ok()?;
            let problems = state["weights"]["problems"].as_array()?.clone();
            (!problems.is_empty()).then_some(state)
        })
        .await
        .expect("problem shown");
    let problem = &state["weights"]["problems"][0];
    assert_eq!(problem["key"], "global", "{problem}");
    assert_eq!(state["weights"]["global"], "idc=25,tke=75");
    s.expect_tke_share(75.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_when_one_is_configured() {
    let mut s = Scenario::start(16).await;
    let token_file = s.lab.dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret\n").expect("token");
    s.lab.config.admin.token_file = Some(token_file.clone());
    s.restart_controller().await;
    let url = format!("http://{}", s.lab.controller.admin_addr);

    let anonymous = AdminClient::new(&url, None).expect("client");
    anonymous.get_weights().await.expect("reads stay open");
    let err = anonymous
        .set_weights(&args(&["idc=1", "tke=3"]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CliError::Refused { status: 401, .. }),
        "{err}"
    );
    let wrong_file = s.lab.dir.path().join("wrong.token");
    std::fs::write(&wrong_file, "s3cre").expect("token");
    let wrong = AdminClient::new(&url, Some(&wrong_file)).expect("client");
    assert!(
        wrong
            .set_weights(&args(&["idc=1", "tke=3"]), None)
            .await
            .is_err()
    );
    assert_eq!(
        s.configmap(),
        serde_json::Value::Null,
        "nothing was written"
    );

    let trusted = AdminClient::new(&url, Some(&token_file)).expect("client");
    trusted
        .set_weights(&args(&["idc=1", "tke=3"]), None)
        .await
        .expect("authorized write");
    s.expect_tke_share(75.0).await;
}
