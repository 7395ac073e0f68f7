//! Per-cluster watchers: Kubernetes API → Index.
//!
//! Owns: the kube clients, one watcher task per cluster and kind, Ingress status,
//! Events for diagnostics, per-cluster sync state. Uses only GA APIs available since
//! Kubernetes 1.26 (discovery.k8s.io/v1, networking.k8s.io/v1) and list-then-watch
//! (no streaming lists). A cluster that fails never blocks or wipes another: each has
//! its own tasks, and a failed watch changes nothing in the Index.

mod events;
mod gateway;
mod gateway_status;
pub(crate) use events::MoreReports;
pub(crate) use gateway_status::RoutesLeftOut;
mod guard;
mod ingress_status;
mod programmed;
pub(crate) use programmed::{LbProgress, Progress};
mod reach;
mod stale;
mod status;
mod watch;

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::task::JoinSet;

pub(crate) use reach::{ReachWatch, spawn_reach};
pub(crate) use stale::watch_stale;
pub use status::{ClusterState, ClusterStatus, GuardedRelist, StatusCell};

use crate::hub::Desired;
use podgate_core::index::{Kind, SERVICE_NAME_LABEL};
use podgate_core::model::ClusterName;

/// Why a cluster's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        cluster: String,
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("cluster {cluster}: no kubeconfig given and none could be inferred: {source}")]
    Infer {
        cluster: String,
        source: kube::config::InferConfigError,
    },
    #[error("cluster {cluster}: {source}")]
    Client {
        cluster: String,
        source: kube::Error,
    },
}

/// A cluster's client and the API server it talks to (for log lines and the admin view).
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: Client,
    pub(crate) api_server: String,
}

/// Builds a client from a kubeconfig file (and context), or infers one (in-cluster,
/// then `$KUBECONFIG`).
pub(crate) async fn client(
    cluster: &str,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Connection, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |source| ClusterError::Kubeconfig {
                cluster: cluster.to_owned(),
                path: path.to_owned(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(err)?;
            let options = KubeConfigOptions {
                context: context.map(str::to_owned),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(err)?
        }
        None => kube::Config::infer()
            .await
            .map_err(|source| ClusterError::Infer {
                cluster: cluster.to_owned(),
                source,
            })?,
    };
    let api_server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| ClusterError::Client {
        cluster: cluster.to_owned(),
        source,
    })?;
    Ok(Connection { client, api_server })
}

/// What the watchers of every cluster share.
#[derive(Clone)]
pub(crate) struct WatchOptions {
    pub(crate) controller_name: String,
    /// Written to Ingress status; empty → status is left alone.
    pub(crate) publish_addresses: Vec<String>,
    /// Publish Kubernetes Events for diagnostics.
    pub(crate) events: bool,
    /// Floor guard: the fraction of a cluster's endpoints a relist may withdraw at
    /// once without confirmation (1.0: no guard).
    pub(crate) withdraw_guard: f64,
    /// How long a guarded relist waits for its confirming list.
    pub(crate) confirm_after: std::time::Duration,
    /// Problems found outside the Index (items an LB refused), published as Events
    /// like its diagnostics.
    pub(crate) more_reports: Option<events::MoreReports>,
    /// Where the LB targets stand, for the Normal `Sync` Event on each Ingress they
    /// have programmed (none without it, or without `events`).
    pub(crate) lb_progress: Option<LbProgress>,
    /// GatewayClass `controllerName` podgate serves.
    pub(crate) gateway_controller_name: String,
    /// The pushing replica's term: Gateway API status is written while it is held
    /// (never without it).
    pub(crate) term: Option<tokio::sync::watch::Receiver<Option<u64>>>,
    /// HTTPRoutes some LB leaves out, for their status.
    pub(crate) routes_left_out: Option<RoutesLeftOut>,
}

/// The running watchers of one cluster. Dropping it stops them.
pub(crate) struct ClusterWatch {
    pub(crate) status: StatusCell,
    _tasks: JoinSet<()>,
}

const KINDS: usize = 5;

/// How often the API server's liveness is checked.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks the API server for its version every second. A watch that fails marks the
/// cluster stale, but a watch that resumes says nothing until an object changes: this
/// probe is what notices that the API server is back.
async fn probe(client: Client, status: StatusCell) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        match client.apiserver_version().await {
            Ok(_) => {
                status.reachable();
            }
            Err(e) => {
                let cause = crate::logging::causes(&e);
                status.failed(format!("API server unreachable: {cause}"));
            }
        }
    }
}

/// The Ingress watcher, with what it feeds: the status writer and the `Sync` Events.
fn spawn_ingress_watch(
    tasks: &mut JoinSet<()>,
    client: &Client,
    ctx: (ClusterName, Arc<Desired>, StatusCell),
    options: &WatchOptions,
) {
    let (c, d, s) = ctx;
    let seen = ingress_status::Seen::default();
    let status_of = ingress_status::recorder(seen.clone());
    let addresses = options.publish_addresses.clone();
    let programmed = programmed::Shared::default();
    let sync_of = programmed::recorder(programmed.clone(), &addresses);
    let recorder: watch::AfterApply<Ingress> = Box::new(move |ing, origin| {
        status_of(ing, origin);
        sync_of(ing, origin);
    });
    tasks.spawn(ingress_status::run(
        client.clone(),
        c.clone(),
        d.clone(),
        seen,
        addresses,
    ));
    if let (true, Some(progress)) = (options.events, options.lb_progress.clone()) {
        tasks.spawn(programmed::run(
            client.clone(),
            c.clone(),
            d.clone(),
            options.controller_name.clone(),
            programmed,
            progress,
        ));
    }
    tasks.spawn(watch::run(
        Api::<Ingress>::all(client.clone()),
        watcher::Config::default(),
        Kind::Ingress,
        c,
        d,
        s,
        Some(recorder),
        None,
    ));
}

/// Starts one watcher per kind for `cluster`.
pub(crate) fn spawn(
    cluster: ClusterName,
    client: Client,
    api_server: &str,
    desired: Arc<Desired>,
    options: &WatchOptions,
) -> ClusterWatch {
    let status = StatusCell::new(cluster.as_str(), api_server, KINDS);
    let mut tasks = JoinSet::new();
    let ctx = (cluster.clone(), desired.clone(), status.clone());
    let cfg = watcher::Config::default;
    {
        let (c, d, s) = ctx.clone();
        tasks.spawn(watch::run(
            Api::<IngressClass>::all(client.clone()),
            cfg(),
            Kind::IngressClass,
            c,
            d,
            s,
            None,
            None,
        ));
    }
    spawn_ingress_watch(&mut tasks, &client, ctx.clone(), options);
    {
        let (c, d, s) = ctx.clone();
        tasks.spawn(watch::run(
            Api::<Service>::all(client.clone()),
            cfg(),
            Kind::Service,
            c,
            d,
            s,
            None,
            None,
        ));
    }
    {
        let (c, d, s) = ctx.clone();
        let config = cfg().labels(SERVICE_NAME_LABEL);
        let guard = guard::RelistGuard::new(&client, options, c.clone(), d.clone(), s.clone());
        tasks.spawn(watch::run(
            Api::<EndpointSlice>::all(client.clone()),
            config,
            Kind::EndpointSlice,
            c,
            d,
            s,
            None,
            Some(guard),
        ));
    }
    {
        let (c, d, s) = ctx;
        let config = cfg().fields("type=kubernetes.io/tls");
        tasks.spawn(watch::run(
            Api::<Secret>::all(client.clone()),
            config,
            Kind::Secret,
            c,
            d,
            s,
            None,
            None,
        ));
    }
    tasks.spawn(gateway::run(
        gateway::Context {
            cluster: cluster.clone(),
            client: client.clone(),
            desired: desired.clone(),
            status: status.clone(),
            cell: StatusCell::new(cluster.as_str(), api_server, 5),
        },
        options.gateway_controller_name.clone(),
        options
            .term
            .clone()
            .map(|t| (t, options.routes_left_out.clone())),
    ));
    tasks.spawn(probe(client.clone(), status.clone()));
    if options.events {
        tasks.spawn(events::run(
            client,
            cluster,
            desired,
            options.controller_name.clone(),
            options.more_reports.clone(),
        ));
    }
    ClusterWatch {
        status,
        _tasks: tasks,
    }
}
