//! `podgate proxy` as a real process, killed with SIGKILL under load and started again:
//! it serves its last state from its state file at once (not one 404), and the
//! controller notices the new instance and resyncs what changed meanwhile within 1 s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::proxy_process::{
    Load, TOKEN, WAIT, endpoints, lab_with_process, load, scale_out_idc, spawn, summary_instance,
    target, token_of,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_under_load_serves_its_last_state_at_once_and_catches_up_within_1s() {
    let dir = tempfile::tempdir().unwrap();
    let token = TOKEN;
    let (lab, mut proxy, mut idc, tke) = lab_with_process(dir.path()).await;
    let counts = Arc::new(Load::default());
    let client = load(proxy.http, Arc::clone(&counts));
    lab.eventually("load is served", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await
    .unwrap();
    proxy.child.start_kill().unwrap();
    proxy.child.wait().await.unwrap();
    let served_before = counts.ok.load(Ordering::Relaxed);

    // While it is down, a pod scales out in idc: the file does not know it.
    let now_all = scale_out_idc(&lab, &mut idc, &tke).await;
    lab.eventually("the controller knows the new pod", WAIT, || async {
        (endpoints(lab.proxy.admin_addr, token_of(&lab).as_str()).await? == now_all).then_some(())
    })
    .await
    .unwrap();

    // Long enough down that the controller's retries are backing off by seconds.
    lab.eventually("the controller backs off", WAIT, || async {
        (target(&lab).await?["failures"].as_u64()? >= 6).then_some(())
    })
    .await
    .unwrap();
    let mut restarted = spawn(dir.path(), proxy.http, proxy.admin).await;
    let started = tokio::time::Instant::now();
    lab.eventually("the restarted proxy holds the new pod", WAIT, || async {
        (endpoints(restarted.admin, token).await? == now_all).then_some(())
    })
    .await
    .unwrap();
    let caught_up = started.elapsed();
    lab.eventually("load is served again", WAIT, || async {
        (counts.ok.load(Ordering::Relaxed) > served_before + 50).then_some(())
    })
    .await
    .unwrap();

    // Killed and back at once, with nothing to push: only the summary poll can tell.
    restarted.child.start_kill().unwrap();
    restarted.child.wait().await.unwrap();
    let again = spawn(dir.path(), proxy.http, proxy.admin).await;
    let started = tokio::time::Instant::now();
    let instance = summary_instance(again.admin, token).await;
    lab.eventually("the controller sees the new instance", WAIT, || async {
        (target(&lab).await?["instance"] == instance.as_str()).then_some(())
    })
    .await
    .unwrap();
    let noticed = started.elapsed();
    counts.stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let (ok, not_found, other) = (
        counts.ok.load(Ordering::Relaxed),
        counts.not_found.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
    );
    assert_eq!(
        (not_found, other),
        (0, 0),
        "{ok} answered 200; unreachable while down: {}",
        counts.unreachable.load(Ordering::Relaxed)
    );
    assert!(
        caught_up <= Duration::from_secs(1),
        "the controller resynced the restarted proxy after {caught_up:?}"
    );
    assert!(
        noticed <= Duration::from_secs(1),
        "the controller noticed the restart after {noticed:?}"
    );
    assert_eq!(endpoints(again.admin, token).await.unwrap(), now_all);
}
