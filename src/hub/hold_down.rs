//! The hold-down timer: releases each hold the Index starts once it has lasted
//! `hold_down`. One task, one deadline per (upstream, cluster): a flap replaces the
//! deadline (the Index has re-armed the hold with a newer generation), so a flapping
//! cluster costs one timer, not one per flap.
//!
//! Owns: time. Never decides who is held (the Index does) and never pushes to an LB
//! itself: a release is an ordinary mutation that the sync workers pick up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use podgate_core::index::{Hold, Input};
use podgate_core::model::{ClusterName, UpstreamKey};

use super::{Cause, Desired};

/// Runs until `desired` drops the sending side (never, in a controller) or the task is
/// dropped. Uses tokio time, so tests may pause it.
pub(crate) async fn run(
    desired: Arc<Desired>,
    mut holds: UnboundedReceiver<Hold>,
    hold_down: Duration,
) {
    let mut timers: BTreeMap<(UpstreamKey, ClusterName), (Hold, Instant)> = BTreeMap::new();
    loop {
        let next = timers.values().map(|(_, at)| *at).min();
        tokio::select! {
            received = holds.recv() => {
                let Some(hold) = received else { return };
                tracing::info!(upstream = %hold.upstream, cluster = %hold.cluster, hold_down_ms = hold_down.as_millis(), "cluster recovered; share held down");
                let key = (hold.upstream.clone(), hold.cluster.clone());
                timers.insert(key, (hold, Instant::now() + hold_down));
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                let due: Vec<_> = timers
                    .iter()
                    .filter(|(_, (_, at))| *at <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    if let Some((hold, _)) = timers.remove(&key) {
                        let cause = Cause::HoldDownOver { cluster: hold.cluster.clone(), upstream: hold.upstream.clone() };
                        let changes = desired.apply(&cause, Input::HoldReleased(hold.clone()));
                        tracing::info!(upstream = %hold.upstream, cluster = %hold.cluster, released = !changes.is_empty(), "hold-down over");
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::index::{Index, IndexConfig};
    use podgate_sim::objects::{default_class, ingress, ingress_class, service, slice};

    fn up(desired: &Desired, cluster: &str, ready: bool) {
        let mut s = slice("shop", &format!("web-{cluster}"), "web").port("http", 8080);
        if ready {
            s = s.ready(if cluster == "idc" {
                "10.0.0.1"
            } else {
                "10.1.0.1"
            });
        }
        let input = Input::Apply {
            cluster: ClusterName::new(cluster),
            object: s.into(),
        };
        desired.apply(&Cause::Test("test"), input);
    }

    fn held(desired: &Desired) -> usize {
        desired.read(|i| i.holds().len())
    }

    /// Virtual time: every sleep below advances the paused clock exactly.
    #[tokio::test(start_paused = true)]
    async fn releases_after_the_hold_down_and_a_flap_re_arms_it() {
        let mut index = Index::new(IndexConfig {
            clusters: vec![
                (ClusterName::new("idc"), 100),
                (ClusterName::new("tke"), 100),
            ],
            ..IndexConfig::default()
        });
        index.dispatch(Input::HoldDown(true));
        let desired = Desired::new(index);
        for c in ["idc", "tke"] {
            let c = ClusterName::new(c);
            let objects: [podgate_core::index::Object; 3] = [
                default_class(ingress_class("podgate", "podgate.io/ingress-controller")).into(),
                ingress("shop", "web")
                    .route("shop.com", "Prefix", "/", "web", 80)
                    .into(),
                service("shop", "web").port("http", 80).into(),
            ];
            let inputs = objects.map(|object| Input::Apply {
                cluster: c.clone(),
                object,
            });
            desired.apply_all(&Cause::Test("test"), inputs);
        }
        up(&desired, "idc", true);
        up(&desired, "tke", true);
        let holds = desired.take_holds();
        let task = tokio::spawn(run(desired.clone(), holds, Duration::from_secs(10)));

        up(&desired, "tke", false);
        up(&desired, "tke", true);
        assert_eq!(held(&desired), 1);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(held(&desired), 1, "not before the hold-down");
        // A flap at 9 s re-arms: the first deadline (10 s) releases nothing.
        up(&desired, "tke", false);
        up(&desired, "tke", true);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(held(&desired), 1, "a flap starts the hold-down again");
        tokio::time::sleep(Duration::from_secs(8) + Duration::from_millis(10)).await;
        assert_eq!(held(&desired), 0, "released 10 s after the last recovery");
        task.abort();
    }
}
