//! Steps migrations: when one is due and its target cluster has an Active endpoint for
//! the application, write the next step (weights and progress, together) to the
//! ConfigMap, on the condition that it did not change meanwhile, so that of several
//! replicas exactly one takes each step. The Index follows through the watcher.
//! Time is `tokio::time`, so tests can pause it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use podgate_core::weights::{App, Next, Pacing};

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
    let mut pacing: BTreeMap<App, Pacing> = BTreeMap::new();
    loop {
        let wake_ms = match tick(&weights, &mut pacing).await {
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

async fn tick(weights: &Weights, pacing: &mut BTreeMap<App, Pacing>) -> Tick {
    let (doc, rv) = weights.current();
    pacing.retain(|app, _| doc.migrations.contains_key(app));
    forget_pauses(weights, &doc.migrations);
    let now = weights.clock.now_ms();
    let mut sleep = IDLE_MS;
    for (app, m) in &doc.migrations {
        let active = weights.has_active(app, &m.target);
        let next = m.next(now, active, pacing.entry(app.clone()).or_default());
        if next == Next::Paused {
            let reason = if m.held {
                "paused by an operator".to_owned()
            } else {
                weights.inactive_reason(app, &m.target)
            };
            if weights.set_pause(app, Some(reason.clone())).is_none() {
                tracing::info!(%app, target = %m.target, percent = m.percent, "migration paused: {reason}");
            }
            sleep = sleep.min(m.every_ms.min(PAUSED_POLL_MS));
            continue;
        }
        if weights.set_pause(app, None).is_some() {
            tracing::info!(%app, target = %m.target, percent = m.percent, "migration resumed");
        }
        let next = match next {
            Next::Done | Next::Paused => continue,
            Next::Wait(ms) => {
                sleep = sleep.min(ms);
                continue;
            }
            Next::Step(next) => next,
        };
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
fn forget_pauses<V>(weights: &Weights, migrations: &BTreeMap<App, V>) {
    weights
        .pauses
        .lock()
        .retain(|app, _| migrations.contains_key(app));
}
