//! What `GET /v1/weights` shows (also under `weights` in `GET /v1/state`): every
//! cluster's weight now, the run-time weights, migrations with their progress and
//! whether they are paused, and ConfigMap values that were not applied. Read-only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use podgate_core::model::ClusterName;
use podgate_core::weights::{Migration, format_duration};

use super::{Pause, Weights};

/// Where a migration stands. Serialized in snake_case (`running`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MigrationState {
    /// Stepping towards its target.
    Running,
    /// Standing still: the target cluster has no Active endpoint (see `paused`).
    Paused,
    /// At its target weight.
    Done,
}

/// One migration as the admin view shows it.
#[derive(Serialize)]
pub(crate) struct MigrationView {
    #[serde(flatten)]
    pub(crate) migration: Migration,
    pub(crate) every: String,
    pub(crate) state: MigrationState,
    pub(crate) paused: Option<Pause>,
    pub(crate) weights: String,
}

/// `GET /v1/weights`, also part of `GET /v1/state`.
#[derive(Serialize)]
pub(crate) struct WeightsView {
    /// `cluster: namespace/name` of the ConfigMap.
    pub(crate) configmap: String,
    pub(crate) loaded: bool,
    pub(crate) resource_version: Option<String>,
    /// Every cluster's weight now (configured, or the run-time global weights).
    pub(crate) clusters: BTreeMap<ClusterName, u32>,
    pub(crate) global: Option<String>,
    pub(crate) apps: BTreeMap<String, String>,
    pub(crate) migrations: BTreeMap<String, MigrationView>,
    /// ConfigMap values that were not applied.
    pub(crate) problems: Vec<podgate_core::weights::Problem>,
}

impl Weights {
    pub(crate) fn view(&self) -> WeightsView {
        let applied = self.applied.lock();
        let pauses = self.pauses.lock();
        let migrations = applied
            .doc
            .migrations
            .iter()
            .map(|(app, m)| {
                let paused = pauses.get(app).cloned();
                let state = match (m.done(), &paused) {
                    (true, _) => MigrationState::Done,
                    (false, Some(_)) => MigrationState::Paused,
                    (false, None) => MigrationState::Running,
                };
                let view = MigrationView {
                    migration: m.clone(),
                    every: format_duration(Duration::from_millis(m.every_ms)),
                    state,
                    paused,
                    weights: m.weights().to_string(),
                };
                (app.to_string(), view)
            })
            .collect();
        WeightsView {
            configmap: format!("{}: {}", self.store.cluster, self.store.object()),
            loaded: applied.loaded,
            resource_version: applied.resource_version.clone(),
            clusters: self
                .desired
                .read(podgate_core::index::Index::cluster_weights)
                .into_iter()
                .collect(),
            global: applied.doc.global.as_ref().map(ToString::to_string),
            apps: applied
                .doc
                .apps
                .iter()
                .map(|(a, w)| (a.to_string(), w.to_string()))
                .collect(),
            migrations,
            problems: applied.problems.clone(),
        }
    }
}
