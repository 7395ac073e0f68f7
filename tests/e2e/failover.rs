//! Failover with damping, end to end: two simulated clusters, the controller, the
//! built-in proxy and live traffic. A cluster whose app scales to zero gives its share
//! away at once with no failed request; when it comes back its share returns only after
//! the hold-down; a cluster flapping every half second costs a bounded number of pushes.

use crate::failover_lab;

use std::time::{Duration, Instant};

use failover_lab::{HOST, PATIENCE, endpoints, now_ms, pushes_since, shop};
use podgate::demo::{LabError, LabOptions};

const HOLD_DOWN: Duration = Duration::from_secs(3);

fn options() -> LabOptions {
    LabOptions {
        hold_down: HOLD_DOWN,
        ..LabOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_to_zero_fails_over_at_once_and_returns_after_the_hold_down() -> Result<(), LabError>
{
    let (lab, idc, _tke) = shop(options(), 31, 2, 2).await?;

    // idc scales to zero while traffic flows: nothing fails, tke takes everything.
    let (during, switched) = tokio::join!(lab.split(HOST, 300), async {
        lab.apply("idc", &endpoints("idc", &[]))?;
        // Immediate (well below the floor guard's 30 s confirmation), with slack for
        // a loaded machine.
        lab.eventually("idc out of the split", Duration::from_secs(10), || async {
            let s = lab.split(HOST, 20).await.ok()?;
            (s.cluster("idc") == 0).then_some(())
        })
        .await
    });
    switched?;
    let during = during?;
    assert_eq!(
        during.failed, 0,
        "failover must not fail a request: {during:?}"
    );
    let after = lab.split(HOST, 100).await?;
    assert_eq!((after.cluster("idc"), after.failed), (0, 0), "{after:?}");

    // idc comes back: held down, then its share returns.
    let back = Instant::now();
    lab.apply("idc", &endpoints("idc", &idc))?;
    let state = lab
        .eventually("a hold for idc", PATIENCE, || async {
            let state = lab.admin_state().await.ok()?;
            let held = state["holds"]
                .as_array()?
                .iter()
                .any(|h| h["cluster"] == "idc");
            held.then_some(state)
        })
        .await?;
    assert!(
        back.elapsed() < HOLD_DOWN,
        "the hold was seen only after the hold-down: {state}"
    );
    let metrics = failover_lab::metrics(&lab).await?;
    if back.elapsed() < HOLD_DOWN {
        assert!(
            metrics.contains(r#"podgate_held_upstreams{cluster="idc"} 1"#),
            "{metrics}"
        );
    }
    let early = lab.split(HOST, 50).await?;
    if back.elapsed() < HOLD_DOWN {
        assert_eq!(
            early.cluster("idc"),
            0,
            "idc served during its hold-down: {early:?}"
        );
    }
    lab.eventually("idc serving again", HOLD_DOWN + PATIENCE, || async {
        let s = lab.split(HOST, 40).await.ok()?;
        (s.cluster("idc") > 0).then_some(())
    })
    .await?;
    let returned = back.elapsed();
    assert!(
        returned >= HOLD_DOWN,
        "idc's share returned after {returned:?}, before the hold-down of {HOLD_DOWN:?}"
    );
    let state = lab.admin_state().await?;
    assert_eq!(state["holds"].as_array().map(Vec::len), Some(0), "{state}");
    let settled = lab.split(HOST, 200).await?;
    assert_eq!(settled.failed, 0);
    assert!(settled.cluster("idc") > 50, "{settled:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_cluster_costs_a_bounded_number_of_pushes() -> Result<(), LabError> {
    let (lab, idc, _tke) = shop(options(), 32, 2, 2).await?;
    let start = now_ms();
    // Ten flaps, one every half second: down 250 ms, up 250 ms. The hold-down (3 s) is
    // never reached while flapping.
    let flaps = 10;
    for _ in 0..flaps {
        lab.apply("idc", &endpoints("idc", &[]))?;
        tokio::time::sleep(Duration::from_millis(250)).await;
        lab.apply("idc", &endpoints("idc", &idc))?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let during = pushes_since(&lab, start);
    // Undamped, every flap would be two pushes (out, in). Damped: the first loss, and
    // nothing more while held.
    assert!(during <= 2, "{during} pushes while flapping {flaps} times");
    lab.eventually("idc serving again", HOLD_DOWN + PATIENCE, || async {
        let s = lab.split(HOST, 40).await.ok()?;
        (s.cluster("idc") > 0 && s.failed == 0).then_some(())
    })
    .await?;
    let total = pushes_since(&lab, start);
    assert!(
        total <= 3,
        "{total} pushes for {flaps} flaps and one release"
    );
    Ok(())
}
