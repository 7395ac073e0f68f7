//! Steps migrations: when one is due and its target cluster has an Active endpoint for
//! the application, write the next step (weights and progress, together) to the
//! ConfigMap, on the condition that it did not change meanwhile, so that of several
//! replicas exactly one takes each step. The Index follows through the watcher.
//! Time is `tokio::time`, so tests can pause it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::weights::App;

use super::Weights;
use super::store::{Edits, StoreError};

/// How often a paused migration checks its target again, at most.
const PAUSED_POLL_MS: u64 = 1000;
/// How long to wait before retrying a write that failed.
const RETRY_MS: u64 = 1000;
/// Idle wake-up: nothing to do, but look again now and then.
const IDLE_MS: u64 = 60_000;

/// Runs until the task is dropped.
pub(super) async fn run(weights: Arc<Weights>) {
    let mut changed = weights.generation.subscribe();
    // After a pause, the target gets a full interval before the next step.
    let mut not_before: BTreeMap<App, u64> = BTreeMap::new();
    loop {
        let wake_ms = match tick(&weights, &mut not_before).await {
            Tick::Wrote(rv) => {
                weights.wait_applied(&rv, Duration::from_secs(2)).await;
                continue;
            }
            Tick::Sleep(ms) => ms,
        };
        let sleep = tokio::time::sleep(Duration::from_millis(wake_ms));
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = sleep => {}
        }
    }
}

enum Tick {
    /// A step was written at this `resourceVersion`.
    Wrote(String),
    /// Nothing due: sleep this long (or until the ConfigMap changes).
    Sleep(u64),
}

async fn tick(weights: &Weights, not_before: &mut BTreeMap<App, u64>) -> Tick {
    let (doc, rv) = weights.current();
    not_before.retain(|app, _| doc.migrations.contains_key(app));
    lock_pauses_retain(weights, &doc.migrations);
    let now = weights.clock.now_ms();
    let mut sleep = IDLE_MS;
    for (app, m) in &doc.migrations {
        let Some(due) = m.due_at_ms() else {
            weights.set_pause(app, None);
            continue;
        };
        if !weights.has_active(app, &m.target) {
            let reason = format!("{} has no Active endpoint for {app}", m.target);
            if weights.set_pause(app, Some(reason.clone())).is_none() {
                tracing::info!(%app, target = %m.target, percent = m.percent, "migration paused: {reason}");
            }
            sleep = sleep.min(m.every_ms.min(PAUSED_POLL_MS));
            continue;
        }
        if weights.set_pause(app, None).is_some() {
            tracing::info!(%app, target = %m.target, percent = m.percent, "migration resumed");
            not_before.insert(app.clone(), now.saturating_add(m.every_ms));
        }
        let due = due.max(not_before.get(app).copied().unwrap_or(0));
        if now < due {
            sleep = sleep.min(due - now);
            continue;
        }
        let next = m.stepped(now);
        let edits: Edits = [
            (app.weights_key(), Some(next.weights().to_string())),
            (app.migration_key(), Some(next.to_json())),
        ]
        .into_iter()
        .collect();
        match weights.store.write(&edits, rv.as_deref()).await {
            Ok(rv) => {
                tracing::info!(%app, target = %next.target, percent = next.percent, weights = %next.weights(), "migration step");
                return Tick::Wrote(rv);
            }
            Err(StoreError::Conflict(_)) => {
                // Another replica stepped, or someone edited: look again once applied.
                tracing::debug!(%app, "migration step lost a race; re-reading");
                sleep = sleep.min(100);
                break;
            }
            Err(e) => {
                tracing::warn!(%app, error = %e, "migration step not written; retrying");
                sleep = sleep.min(RETRY_MS);
            }
        }
    }
    Tick::Sleep(sleep)
}

/// Forgets pauses of migrations that no longer exist.
fn lock_pauses_retain<V>(weights: &Weights, migrations: &BTreeMap<App, V>) {
    super::lock(&weights.pauses).retain(|app, _| migrations.contains_key(app));
}
