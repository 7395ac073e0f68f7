//! End to end: two replicas of one controller with leader election share the simulated
//! clusters and the proxy. Only the Lease holder pushes; the standby keeps a warm
//! Index. When the leader dies, the standby takes over once the Lease has gone stale,
//! with a higher fencing epoch, and changes reach the LB again.

use std::time::Duration;

use podgate::controller::config::LeaderElectionConfig;
use podgate::controller::{self, RunOptions};
use podgate::demo::{Configure, Lab, LabOptions};
use podgate_sim::Gvr;
use serde_json::Value;
use std::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

fn election(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        identity: Some(identity.to_owned()),
        ..LeaderElectionConfig::new()
    }
}

async fn state(http: &reqwest::Client, admin: std::net::SocketAddr) -> Value {
    http.get(format!("http://{admin}/v1/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_the_lease_holder_pushes_and_a_standby_takes_over_when_it_dies() {
    let mut lab = Lab::start(LabOptions {
        configure: Some(Configure::new(|c, _| {
            c.leader_election = Some(election("replica-a"));
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    lab.deploy_pods("first", "first.example.com", 186, 1)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let a = lab.admin_state().await.unwrap();
    assert_eq!(a["pushing"], true, "{}", a["epoch"]);
    let epoch_a = a["epoch"].as_u64().unwrap();

    // A second replica: same owner, same Lease, its own admin listener.
    let mut config = lab.config.clone();
    config.leader_election = Some(election("replica-b"));
    let b = controller::start(&config, RunOptions::default())
        .await
        .unwrap();
    let b_admin = b.admin_addr;
    lab.eventually("the standby has listed", WAIT, || async {
        let s = state(&http, b_admin).await;
        let upstreams = s["upstreams"].as_array().map_or(0, Vec::len);
        (upstreams > 0).then_some(())
    })
    .await
    .unwrap();
    let s = state(&http, b_admin).await;
    assert_eq!(s["pushing"], false, "the standby must not push");
    let metrics = http
        .get(format!("http://{b_admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\npodgate_pushing 0\n"), "{metrics}");
    for exported in [
        "podgate_build_info{",
        "process_cpu_seconds_total ",
        "process_open_fds ",
    ] {
        assert!(metrics.contains(exported), "{exported} in {metrics}");
    }
    assert!(
        s["targets"][0]["pushes"].as_u64() == Some(0),
        "{}",
        s["targets"]
    );

    // The leader dies; the standby takes over and pushes what changes from then on.
    let a = std::mem::replace(&mut lab.controller, b);
    drop(a);
    let epoch_b = lab
        .eventually("the standby leads", WAIT, || async {
            let s = lab.admin_state().await.ok()?;
            s["epoch"].as_u64()
        })
        .await
        .unwrap();
    assert!(epoch_b > epoch_a, "epoch {epoch_b} after {epoch_a}");
    let (_, first) = lab.get("first.example.com", "/").await.unwrap();
    assert!(!first.is_empty());
    lab.deploy_pods("second", "second.example.com", 188, 1)
        .await
        .unwrap();
    let s = lab.admin_state().await.unwrap();
    assert_eq!(s["pushing"], true);
    assert_eq!(s["targets"][0]["state"], "in_sync", "{}", s["targets"]);
}

#[tokio::test]
async fn the_leader_keeps_pushing_while_the_lease_cluster_is_down() {
    let lab = Lab::start(LabOptions {
        configure: Some(Configure::new(|c, _| {
            c.leader_election = Some(election("replica-a"));
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    lab.eventually("leading", WAIT, || async {
        let s = lab.admin_state().await.ok()?;
        s["epoch"].as_u64()
    })
    .await
    .unwrap();
    // The Lease lives in idc; its API server now fails every request. Once the Lease has
    // gone unrenewed for two lease durations, an app deployed in tke alone still reaches
    // the LB: the leader did not step down.
    lab.sim("idc").fail_with(500);
    let leases = Gvr::new("coordination.k8s.io", "v1", "leases");
    let version = || {
        lab.sim("idc")
            .get(&leases, Some("podgate-system"), "podgate-leader")
            .map(|l| l["metadata"]["resourceVersion"].clone())
    };
    let mut last = (version(), Instant::now());
    lab.eventually("the lease unrenewed for two lease durations", WAIT, || {
        let now = version();
        if now != last.0 {
            last = (now, Instant::now());
        }
        let stale = last.1.elapsed() >= 2 * election("x").lease_duration;
        async move { stale.then_some(()) }
    })
    .await
    .unwrap();
    let port = podgate::demo::pods::free_port().await.unwrap();
    let pods = podgate::demo::pods::start_many("tke", "web", 189, 1, 1, port)
        .await
        .unwrap();
    lab.deploy("third", "third.example.com", &[("tke", &pods)])
        .unwrap();
    lab.eventually("the tke app served", WAIT, || async {
        let (status, _) = lab.get("third.example.com", "/").await.ok()?;
        (status == 200).then_some(())
    })
    .await
    .unwrap();
    let s = lab.admin_state().await.unwrap();
    assert_eq!(s["pushing"], true);
}

#[tokio::test]
async fn a_new_leader_epoch_is_above_any_earlier_one_even_from_a_clock_ahead() {
    // A stale Lease left by a holder whose clock ran a day ahead: taking it over with
    // this host's clock would give an epoch every LB refuses.
    let ahead = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap() + 86_400_000;
    let lab = Lab::start(LabOptions {
        configure: Some(Configure::new(move |c, sims| {
            c.leader_election = Some(election("replica-a"));
            sims[0]
                .apply_json(serde_json::json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "podgate-leader", "namespace": "podgate-system",
                                 "annotations": {"podgate.io/epoch": ahead.to_string()}},
                    "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1},
                }))
                .unwrap();
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let epoch = lab
        .eventually("leading", WAIT, || async {
            let s = lab.admin_state().await.ok()?;
            s["epoch"].as_u64()
        })
        .await
        .unwrap();
    assert!(epoch > ahead, "epoch {epoch} not above {ahead}");
    lab.deploy_pods("fourth", "fourth.example.com", 190, 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_leader_shutting_down_hands_the_lease_over_at_once() {
    // A lease far longer than the test waits: only a released Lease lets B lead in time.
    let long = |identity: &str| LeaderElectionConfig {
        lease_duration: Duration::from_mins(1),
        ..election(identity)
    };
    let mut lab = Lab::start(LabOptions {
        configure: Some(Configure::new(move |c, _| {
            c.leader_election = Some(long("replica-a"));
        })),
        ..LabOptions::default()
    })
    .await
    .unwrap();
    let epoch_a = lab
        .eventually("A leads", WAIT, || async {
            lab.admin_state().await.ok()?["epoch"].as_u64()
        })
        .await
        .unwrap();
    let mut config = lab.config.clone();
    config.leader_election = Some(long("replica-b"));
    let b = controller::start(&config, RunOptions::default())
        .await
        .unwrap();
    let a = std::mem::replace(&mut lab.controller, b);
    a.shutdown().await;
    let epoch_b = lab
        .eventually("B leads", WAIT, || async {
            lab.admin_state().await.ok()?["epoch"].as_u64()
        })
        .await
        .unwrap();
    assert!(epoch_b > epoch_a);
    lab.deploy_pods("fifth", "fifth.example.com", 191, 1)
        .await
        .unwrap();
}
