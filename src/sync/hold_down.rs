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

use crate::index::Hold;
use crate::model::{ClusterName, UpstreamKey};

use super::Desired;

/// Runs until `desired` drops the sending side (never, in a controller) or the task is
/// dropped. Uses tokio time, so tests may pause it.
pub async fn run(desired: Arc<Desired>, mut holds: UnboundedReceiver<Hold>, hold_down: Duration) {
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
                        let cause = format!("{}: hold-down over for {}", hold.cluster, hold.upstream);
                        let changes = desired.mutate(&cause, |i| i.release_hold(&hold));
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
