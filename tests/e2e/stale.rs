//! Stale clusters and the floor guard, end to end. An API server that goes away leaves
//! its cluster stale with its endpoints kept (by default forever; with `stale_ttl`
//! withdrawn after it, and back when the cluster answers again). A relist that would
//! withdraw 80 % of a cluster's endpoints is held, and only a fresh list after
//! `confirm_after` is applied.

use crate::failover_lab;

use std::time::{Duration, Instant};

use failover_lab::{HOST, PATIENCE, cluster, endpoints, registered, shop};
use podgate::demo::{Lab, LabError, LabOptions};

fn options() -> LabOptions {
    LabOptions {
        // Isolate stale handling from failover damping.
        hold_down: Duration::ZERO,
        ..LabOptions::default()
    }
}

async fn state_of(lab: &Lab, name: &str) -> Option<String> {
    cluster(lab, name).await?["state"]
        .as_str()
        .map(str::to_owned)
}

async fn wait_state(lab: &Lab, name: &str, want: &str) -> Result<(), LabError> {
    lab.eventually(&format!("{name} {want}"), PATIENCE, || async {
        (state_of(lab, name).await? == want).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_down_leaves_the_cluster_stale_with_its_endpoints() -> Result<(), LabError> {
    let (lab, _idc, _tke) = shop(options(), 41, 2, 2).await?;
    lab.sim("idc").stop().await;
    wait_state(&lab, "idc", "stale").await?;
    // Stale is not empty: for a while (three seconds) idc keeps its pods and its share.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(3) {
        assert_eq!(registered(&lab, "idc").await, Some(2));
        let s = lab.split(HOST, 20).await?;
        assert!(s.failed == 0 && s.cluster("idc") > 0, "{s:?}");
    }
    assert_eq!(state_of(&lab, "idc").await.as_deref(), Some("stale"));
    // Back: synced again, even though the watchers resume without an event.
    lab.sim("idc").restart().await?;
    wait_state(&lab, "idc", "synced").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stale_ttl_endpoints_are_withdrawn_after_it_and_return() -> Result<(), LabError> {
    let ttl = Duration::from_secs(2);
    let (lab, _idc, _tke) = shop(
        LabOptions {
            stale_ttl: Some(ttl),
            ..options()
        },
        42,
        2,
        2,
    )
    .await?;
    let stopped = Instant::now();
    lab.sim("idc").stop().await;
    wait_state(&lab, "idc", "stale").await?;
    wait_state(&lab, "idc", "expired").await?;
    let expired = stopped.elapsed();
    assert!(
        expired >= ttl,
        "expired after {expired:?}, before stale_ttl {ttl:?}"
    );
    lab.eventually("idc withdrawn", PATIENCE, || async {
        (registered(&lab, "idc").await? == 0).then_some(())
    })
    .await?;
    let s = lab.split(HOST, 50).await?;
    assert_eq!((s.cluster("idc"), s.failed), (0, 0), "{s:?}");

    lab.sim("idc").restart().await?;
    wait_state(&lab, "idc", "synced").await?;
    lab.eventually("idc serving again", PATIENCE, || async {
        let s = lab.split(HOST, 40).await.ok()?;
        (registered(&lab, "idc").await? == 2 && s.cluster("idc") > 0).then_some(())
    })
    .await?;
    Ok(())
}

/// Makes idc relist from a store where its slice has only `keep` of its pods: the API
/// server goes away, the slice shrinks meanwhile, history is compacted, and it comes
/// back (watchers get 410 and relist).
async fn shrink_behind_a_relist(
    lab: &Lab,
    pods: &[podgate::demo::pods::Pod],
    keep: usize,
) -> Result<(), LabError> {
    let sim = lab.sim("idc");
    sim.stop().await;
    wait_state(lab, "idc", "stale").await?;
    lab.apply("idc", &endpoints("idc", &pods[..keep]))?;
    sim.expire_history();
    sim.restart().await?;
    Ok(())
}

async fn guarded(lab: &Lab) -> Option<serde_json::Value> {
    let c = cluster(lab, "idc").await?;
    (!c["guarded_relist"].is_null()).then(|| c["guarded_relist"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_missing_most_endpoints_is_held_then_applied_once_confirmed()
-> Result<(), LabError> {
    let confirm = Duration::from_secs(3);
    let (lab, idc, _tke) = shop(
        LabOptions {
            confirm_after: confirm,
            ..options()
        },
        43,
        5,
        2,
    )
    .await?;
    shrink_behind_a_relist(&lab, &idc, 1).await?;
    let held = lab
        .eventually("relist held", PATIENCE, || guarded(&lab))
        .await?;
    let since = Instant::now();
    assert_eq!(
        (held["before"].as_u64(), held["withdrawn"].as_u64()),
        (Some(5), Some(4))
    );
    // Held: all five pods stay registered and serve.
    assert_eq!(registered(&lab, "idc").await, Some(5));
    let metrics = failover_lab::metrics(&lab).await?;
    if since.elapsed() < confirm {
        assert!(
            metrics.contains(r#"podgate_guarded_withdrawal_endpoints{cluster="idc"} 4"#),
            "{metrics}"
        );
    }
    let s = lab.split(HOST, 60).await?;
    assert_eq!(s.failed, 0);
    assert!(
        s.by_pod.keys().filter(|p| p.starts_with("idc/")).count() > 1,
        "{s:?}"
    );
    // Confirmed by a fresh list: applied.
    lab.eventually("withdrawal applied", confirm + PATIENCE, || async {
        (registered(&lab, "idc").await? == 1).then_some(())
    })
    .await?;
    // Seen here at least `confirm` after it was held (the hold began before `since`).
    assert!(
        since.elapsed() + Duration::from_millis(100) >= confirm,
        "{:?}",
        since.elapsed()
    );
    assert!(guarded(&lab).await.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_relist_is_discarded_when_a_fresh_list_shows_the_endpoints_back()
-> Result<(), LabError> {
    let confirm = Duration::from_secs(2);
    let (lab, idc, _tke) = shop(
        LabOptions {
            confirm_after: confirm,
            ..options()
        },
        44,
        5,
        2,
    )
    .await?;
    shrink_behind_a_relist(&lab, &idc, 1).await?;
    lab.eventually("relist held", PATIENCE, || guarded(&lab))
        .await?;
    lab.apply("idc", &endpoints("idc", &idc))?;
    // Until the guard is done, and after, idc never drops below its five pods.
    let deadline = Instant::now() + confirm + PATIENCE;
    while guarded(&lab).await.is_some() {
        assert!(Instant::now() < deadline, "guard never resolved");
        assert_eq!(registered(&lab, "idc").await, Some(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered(&lab, "idc").await, Some(5));
    let s = lab.split(HOST, 60).await?;
    assert_eq!(s.failed, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_deleted_slices_is_held_past_the_guard_then_confirmed() -> Result<(), LabError> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use podgate_sim::Gvr;
    use podgate_sim::objects::slice;

    let confirm = Duration::from_secs(3);
    let (lab, idc, _tke) = shop(
        LabOptions {
            confirm_after: confirm,
            ..options()
        },
        45,
        12,
        2,
    )
    .await?;
    // One slice per pod, then the shared slice goes (its addresses stay elsewhere).
    let port = idc[0].addr.port();
    for (i, pod) in idc.iter().enumerate() {
        let one = slice(failover_lab::NS, &format!("web-idc-{i}"), "web")
            .port("http", port)
            .ready(&pod.ip());
        lab.apply("idc", &one.build())?;
    }
    let sim = lab.sim("idc");
    let gvr = Gvr::of::<EndpointSlice>();
    sim.delete(&gvr, Some(failover_lab::NS), "web-idc")?;
    // Eleven of the twelve pods' slices deleted in a burst: the first nine pass (a
    // burst of fewer than ten is never held), the tenth is held with the eleventh.
    for i in 0..11 {
        sim.delete(&gvr, Some(failover_lab::NS), &format!("web-idc-{i}"))?;
    }
    let held = lab
        .eventually("burst held", PATIENCE, || guarded(&lab))
        .await?;
    let since = Instant::now();
    assert_eq!(
        (held["before"].as_u64(), held["withdrawn"].as_u64()),
        (Some(12), Some(10)),
        "{held}"
    );
    lab.eventually("nine deletions applied", PATIENCE, || async {
        (registered(&lab, "idc").await? == 3).then_some(())
    })
    .await?;
    assert!(guarded(&lab).await.is_some(), "still held");
    lab.eventually("burst confirmed", confirm + PATIENCE, || async {
        (registered(&lab, "idc").await? == 1).then_some(())
    })
    .await?;
    assert!(since.elapsed() + Duration::from_millis(100) >= confirm);
    assert!(guarded(&lab).await.is_none());
    let s = lab.split(HOST, 40).await?;
    assert_eq!(s.failed, 0);
    Ok(())
}

/// Whether the proxy (the LB) holds an endpoint at `address`.
async fn proxy_holds(lab: &Lab, address: &str) -> Result<bool, LabError> {
    let state = lab.proxy_state().await?;
    Ok(state["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
        .any(|e| e["address"] == address))
}

/// A rolling update (one pod in, one out) or a flapping readiness probe is no mass
/// withdrawal: 30 rounds of adding and removing one of 22 endpoints within 10 s, and
/// every removal reaches the LB within 250 ms. Before the guard counted net of
/// additions, the 12th removal was held for `confirm_after` (issue 12, fault 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_rollout_is_never_held_by_the_floor_guard() -> Result<(), LabError> {
    let (lab, idc, _tke) = shop(options(), 46, 22, 1).await?;
    let port = idc[0].addr.port();
    let surge = podgate::demo::pods::start_many("idc", "web", 46, 60, 1, port).await?;
    let address = surge[0].ip();
    let with_surge = {
        let mut s = endpoints("idc", &idc);
        let mut extra = s.endpoints[0].clone();
        extra.addresses = vec![address.clone()];
        s.endpoints.push(extra);
        s
    };
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for round in 0..30 {
        lab.apply("idc", &with_surge)?;
        lab.eventually("the new pod registered", PATIENCE, || async {
            proxy_holds(&lab, &address).await.ok()?.then_some(())
        })
        .await?;
        let removed = Instant::now();
        lab.apply("idc", &endpoints("idc", &idc))?;
        lab.eventually("the removal reached the LB", PATIENCE, || async {
            (!proxy_holds(&lab, &address).await.ok()?).then_some(())
        })
        .await?;
        let took = removed.elapsed();
        slowest = slowest.max(took);
        assert!(
            took <= Duration::from_millis(250),
            "round {round}: the removal took {took:?}; held: {:?}",
            guarded(&lab).await
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(guarded(&lab).await.is_none());
    eprintln!("slowest removal: {slowest:?}");
    Ok(())
}
