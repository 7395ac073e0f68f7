//! Run-time weights and migrations in the controller. The weights ConfigMap in the home
//! cluster is the one truth: its watcher applies it to the Index, admin writes go to the
//! ConfigMap only, and the ramp steps migrations there. So every replica, and a
//! restarted controller, converges on the same weights.
//!
//! Owns: the ConfigMap watcher, the ramp task, the `/v1/weights` and `/v1/migrations`
//! admin routes. Never changes the Index except from the ConfigMap's content; never
//! writes any other Kubernetes object.

mod api;
mod ramp;
mod store;
mod view;
mod watch;

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

pub(crate) use api::{handle, owns};
pub(crate) use view::WeightsView;

use crate::hub::{Cause, Desired};
use podgate_core::index::Input;
use podgate_core::model::{ClusterName, Upstream};
use podgate_core::weights::{App, Problem, WeightsDoc};

use super::ControllerError;
use super::config::ControllerConfig;
use store::Store;

/// How long start-up waits for the ConfigMap before serving configured weights.
const PRELOAD_TIMEOUT: Duration = Duration::from_secs(3);

/// Wall-clock milliseconds that advance with `tokio::time`, so that paused-time tests
/// move migrations forward.
#[derive(Clone, Debug)]
struct Clock {
    wall_ms: u64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall_ms: crate::clock::now_ms(),
            start: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_ms.saturating_add(elapsed)
    }
}

/// What the ConfigMap said last, as applied.
#[derive(Debug, Default)]
struct Applied {
    doc: WeightsDoc,
    resource_version: Option<String>,
    problems: Vec<Problem>,
    /// Whether the ConfigMap (or its absence) was read at least once.
    loaded: bool,
}

/// Why a migration is not stepping.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Pause {
    pub(crate) since_ms: u64,
    pub(crate) reason: String,
}

impl Weights {
    /// Who may write.
    pub(crate) fn writes(&self) -> &Writes {
        &self.writes
    }

    /// `token`, `loopback` or `refused`, for the UI.
    pub(crate) fn writes_mode(&self) -> &'static str {
        match self.writes {
            Writes::Token(_) => "token",
            Writes::Loopback => "loopback",
            Writes::Refused { .. } => "refused",
        }
    }
}

/// Who may write weights and migrations through the admin API.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Writes {
    /// Whoever sends the bearer token of `admin.token_file`.
    Token(String),
    /// Anyone who reaches the listener: no token is configured and the admin listener
    /// is bound to a loopback address, so only this machine can.
    Loopback,
    /// Nobody: no token is configured and the listener can be reached from elsewhere.
    Refused { listen: std::net::SocketAddr },
}

impl Writes {
    pub(crate) fn new(token: Option<String>, listen: std::net::SocketAddr) -> Self {
        match token {
            Some(token) => Self::Token(token),
            None if listen.ip().is_loopback() => Self::Loopback,
            None => Self::Refused { listen },
        }
    }
}

/// The controller's weights: see the module documentation.
pub(crate) struct Weights {
    store: Store,
    desired: Arc<Desired>,
    /// Configured clusters with their configured weights.
    configured: Vec<(ClusterName, u32)>,
    writes: Writes,
    applied: Mutex<Applied>,
    /// Bumped after every apply.
    generation: tokio::sync::watch::Sender<u64>,
    pauses: Mutex<BTreeMap<App, Pause>>,
    clock: Clock,
}

/// Reads the ConfigMap (bounded by a timeout), applies it, then starts its watcher and
/// the ramp in `tasks`.
pub(crate) async fn start(
    config: &ControllerConfig,
    clients: &super::run::Clients,
    desired: &Arc<Desired>,
    tasks: &mut JoinSet<()>,
) -> Result<Arc<Weights>, ControllerError> {
    let writes = Writes::new(config.admin.token()?, config.admin.listen);
    if let Writes::Refused { listen } = &writes {
        tracing::warn!(%listen, "no admin.token_file and the admin listener is not on loopback: weight and migration writes are refused");
    }
    let home = config.weights_cluster().ok_or_else(|| {
        ControllerError::Config(super::config::ConfigError::Invalid {
            field: "weights.cluster".to_owned(),
            message: "not a configured cluster".to_owned(),
        })
    })?;
    let client = clients.of(&home.name)?;
    let store = Store::new(
        client,
        &home.name,
        &config.weights.namespace,
        &config.weights.name,
    );
    let weights = Arc::new(Weights {
        store,
        desired: desired.clone(),
        configured: config
            .clusters
            .iter()
            .map(|c| (ClusterName::new(&c.name), c.weight))
            .collect(),
        writes,
        applied: Mutex::new(Applied::default()),
        generation: tokio::sync::watch::Sender::new(0),
        pauses: Mutex::new(BTreeMap::new()),
        clock: Clock::new(),
    });
    match tokio::time::timeout(PRELOAD_TIMEOUT, weights.store.get()).await {
        Ok(Ok(cm)) => {
            let rv = cm
                .as_ref()
                .and_then(|c| c.metadata.resource_version.clone());
            weights.apply(cm.and_then(|c| c.data).as_ref(), rv);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "weights ConfigMap not read; configured weights until it is");
        }
        Err(_) => {
            tracing::warn!(configmap = %weights.store.object(), "weights ConfigMap not read in time; configured weights until it is");
        }
    }
    tasks.spawn(watch::run(weights.clone()));
    tasks.spawn(ramp::run(weights.clone()));
    Ok(weights)
}

impl Weights {
    fn cluster_names(&self) -> Vec<ClusterName> {
        self.configured.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Applies the ConfigMap's data (`None`: it does not exist) to the Index.
    fn apply(&self, data: Option<&BTreeMap<String, String>>, resource_version: Option<String>) {
        let empty = BTreeMap::new();
        let mut applied = self.applied.lock();
        let (doc, problems) =
            WeightsDoc::parse(data.unwrap_or(&empty), &self.cluster_names(), &applied.doc);
        for p in problems.iter().filter(|p| !applied.problems.contains(p)) {
            tracing::warn!(configmap = %self.store.object(), key = %p.key, problem = %p.message, "weights value not applied; the previous one stays");
        }
        let old = std::mem::replace(&mut applied.doc, doc);
        let doc = &applied.doc;
        let cause = Cause::WeightsConfigMap {
            cluster: ClusterName::new(&self.store.cluster),
            object: self.store.object(),
        };
        let weights = self
            .configured
            .iter()
            .map(|(cluster, configured)| Input::ClusterWeight {
                cluster: cluster.clone(),
                weight: doc.global.as_ref().map_or(*configured, |g| g.get(cluster)),
            });
        let gone = old
            .apps
            .keys()
            .filter(|a| !doc.apps.contains_key(*a))
            .map(|app| Input::AppWeights {
                namespace: app.namespace.clone(),
                service: app.service.clone(),
                weights: None,
            });
        let apps = doc.apps.iter().map(|(app, w)| Input::AppWeights {
            namespace: app.namespace.clone(),
            service: app.service.clone(),
            weights: Some(w.clone()),
        });
        let changes = self
            .desired
            .apply_all(&cause, weights.chain(gone).chain(apps));
        if !changes.upstreams.is_empty() {
            tracing::info!(configmap = %self.store.object(), upstreams = changes.upstreams.len(), "weights applied");
        }
        applied.problems = problems;
        applied.resource_version = resource_version;
        applied.loaded = true;
        drop(applied);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The applied document and the `resourceVersion` it came from.
    fn current(&self) -> (WeightsDoc, Option<String>) {
        let applied = self.applied.lock();
        (applied.doc.clone(), applied.resource_version.clone())
    }

    /// Waits until this replica applied `resource_version` (or a later one). Versions
    /// are opaque; numeric ones (every real API server's) compare as numbers.
    async fn wait_applied(&self, resource_version: &str, timeout: Duration) -> bool {
        let reached = |current: Option<&str>| match current {
            Some(c) if c == resource_version => true,
            Some(c) => {
                matches!((c.parse::<u64>(), resource_version.parse::<u64>()), (Ok(a), Ok(b)) if a >= b)
            }
            None => false,
        };
        let mut rx = self.generation.subscribe();
        let wait = async {
            loop {
                if reached(self.applied.lock().resource_version.as_deref()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Upstreams of `app` in the desired state.
    fn upstreams_of(&self, app: &App) -> Vec<Arc<Upstream>> {
        let snapshot = self.desired.snapshot();
        snapshot
            .upstreams
            .values()
            .filter(|u| *u.key.namespace == *app.namespace && *u.key.service == *app.service)
            .cloned()
            .collect()
    }

    /// Whether `cluster` has an Active endpoint in some upstream of `app`.
    fn has_active(&self, app: &App, cluster: &ClusterName) -> bool {
        self.upstreams_of(app)
            .iter()
            .any(|u| u.active().any(|e| e.cluster == *cluster))
    }

    /// Why `cluster` has no Active endpoint for `app`: held down after recovering
    /// (failover damping), or none at all.
    fn inactive_reason(&self, app: &App, cluster: &ClusterName) -> String {
        let held = self
            .desired
            .read(podgate_core::index::Index::holds)
            .iter()
            .any(|h| {
                *h.upstream.namespace == *app.namespace
                    && *h.upstream.service == *app.service
                    && h.cluster == *cluster
            });
        if held {
            format!("{cluster} is held down for {app} after recovering (hold_down)")
        } else {
            format!("{cluster} has no Active endpoint for {app}")
        }
    }

    /// Records whether `app`'s migration is paused; returns the previous pause.
    fn set_pause(&self, app: &App, reason: Option<String>) -> Option<Pause> {
        let mut pauses = self.pauses.lock();
        match reason {
            Some(reason) => {
                let since_ms = pauses
                    .get(app)
                    .map_or_else(|| self.clock.now_ms(), |p| p.since_ms);
                pauses.insert(app.clone(), Pause { since_ms, reason })
            }
            None => pauses.remove(app),
        }
    }
}

#[cfg(test)]
mod writes_tests {
    use super::Writes;

    #[test]
    fn without_a_token_only_a_loopback_listener_takes_writes() {
        let at = |a: &str| a.parse().unwrap();
        assert_eq!(
            Writes::new(Some("t".into()), at("0.0.0.0:9900")),
            Writes::Token("t".into())
        );
        assert_eq!(Writes::new(None, at("127.0.0.1:9900")), Writes::Loopback);
        assert_eq!(Writes::new(None, at("[::1]:9900")), Writes::Loopback);
        assert_eq!(
            Writes::new(None, at("0.0.0.0:9900")),
            Writes::Refused {
                listen: at("0.0.0.0:9900")
            }
        );
        assert_eq!(
            Writes::new(None, at("10.0.0.5:9900")),
            Writes::Refused {
                listen: at("10.0.0.5:9900")
            }
        );
    }
}
