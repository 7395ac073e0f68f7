//! Wiring: one Index, one watcher set per cluster, one sync worker per LB instance,
//! the admin view. Returns handles so that `podgate demo` and tests can run a
//! controller in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cluster::{self, ClusterState, ClusterWatch, ReachWatch, StatusCell, WatchOptions};
use crate::hub::{Desired, hold_down};
use crate::sync::{Audit, SyncConfig, SyncMetrics, Worker};
use podgate_core::index::{EndpointTarget, Index, IndexConfig, Input};
use podgate_core::model::ClusterName;

use super::admin::{self, AdminState};
use super::config::{ConfigError, ControllerConfig, RoutableFrom};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("admin or health listener {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Webhook(#[from] crate::gate::webhook::WebhookError),
}

/// Binds `admin.listen` and, if configured, `health_listen`; their tasks join `tasks`.
async fn serve_admin(
    config: &ControllerConfig,
    admin: &Arc<AdminState>,
    tasks: &mut JoinSet<()>,
) -> Result<(SocketAddr, Option<SocketAddr>), ControllerError> {
    let mut listen = async |addr: SocketAddr, scope| {
        let (bound, task) = admin::serve(addr, scope, &config.admin, admin.clone())
            .await
            .map_err(|source| ControllerError::Admin { addr, source })?;
        tasks.spawn(async move {
            let _ = task.await;
        });
        Ok::<_, ControllerError>(bound)
    };
    let admin_addr = listen(config.admin.listen, admin::Scope::Admin).await?;
    let health_addr = match config.health_listen {
        Some(addr) => Some(listen(addr, admin::Scope::Health).await?),
        None => None,
    };
    Ok((admin_addr, health_addr))
}

/// Knobs that the configuration file does not expose (tests shorten them).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub sync: SyncConfig,
    /// Publish Kubernetes Events for diagnostics.
    pub events: bool,
}

/// A running controller. Dropping it stops every task.
pub struct Controller {
    pub admin_addr: SocketAddr,
    /// The health listener's address, when `health_listen` was configured.
    pub health_addr: Option<SocketAddr>,
    /// Where the readiness gate's webhook listens, when configured.
    pub webhook_addr: Option<SocketAddr>,
    pub desired: Arc<Desired>,
    pub admin: Arc<AdminState>,
    /// Asks the leader election to stand down and hand the Lease back.
    resign: Option<super::leader::Resign>,
    _clusters: Vec<ClusterWatch>,
    _tasks: JoinSet<()>,
}

impl Controller {
    /// Stops gracefully: a leader stops pushing and releases its Lease, so a standby
    /// takes over at once instead of after `lease_duration`. Bounded by a few seconds;
    /// dropping the controller afterwards stops everything else.
    pub async fn shutdown(mut self) {
        if let Some(resign) = self.resign.take() {
            resign.resign(Duration::from_secs(5)).await;
        }
    }
}

/// The fencing epoch of a controller without leader election: its start time in
/// milliseconds, so a controller started later wins over one that started earlier.
fn epoch() -> u64 {
    crate::clock::now_ms()
}

/// Applies each cluster's routability guard and target type to the Index; returns which
/// extra watchers (kube-ovn Subnets, Nodes) each cluster needs.
fn reachability(
    index: &mut Index,
    config: &ControllerConfig,
) -> Result<Vec<ReachWatch>, ControllerError> {
    let mut reach = Vec::new();
    for (i, c) in config.clusters.iter().enumerate() {
        let name = ClusterName::new(&c.name);
        // kube-ovn: nothing is routable until its Subnets are listed.
        let routable = match (c.routable_nets(i)?, c.routable_from) {
            (Some(nets), _) => Some(nets),
            (None, Some(RoutableFrom::KubeOvn)) => Some(Vec::new()),
            (None, None) => None,
        };
        index.dispatch(Input::Routable {
            cluster: name.clone(),
            routable,
        });
        index.dispatch(Input::Target {
            cluster: name,
            target: c.target,
        });
        reach.push(ReachWatch {
            subnets: c.routable_from == Some(RoutableFrom::KubeOvn),
            nodes: c.target == EndpointTarget::NodePort,
        });
    }
    Ok(reach)
}

/// Gives the LB workers a term while this replica leads and every cluster has listed.
async fn publish_term(
    mut listed: watch::Receiver<bool>,
    mut leader: watch::Receiver<Option<u64>>,
    term: watch::Sender<Option<u64>>,
) {
    loop {
        let now = if *listed.borrow_and_update() {
            *leader.borrow_and_update()
        } else {
            None
        };
        crate::sync::set_term(&term, now);
        tokio::select! {
            r = listed.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
        }
    }
}

/// Who leads: the Lease holder with leader election, else this replica (fenced by its
/// start time).
fn campaign(
    config: &ControllerConfig,
    clients: &Clients,
    listed: watch::Receiver<bool>,
    lbs_fence: bool,
    tasks: &mut JoinSet<()>,
) -> Result<(watch::Receiver<Option<u64>>, Option<super::leader::Resign>), ControllerError> {
    let (tx, rx) = watch::channel(None);
    if let (Some(election), Some(home)) = (&config.leader_election, config.lease_cluster()) {
        let api = kube::Api::namespaced(clients.of(&home.name)?, &election.namespace);
        let (resign, resigned) = super::leader::Resign::new();
        let campaigner = super::leader::Campaigner {
            config: election.clone(),
            listed,
            lbs_fence,
            resigned,
        };
        tasks.spawn(super::leader::run(api, campaigner, tx));
        return Ok((rx, Some(resign)));
    }
    tx.send_replace(Some(epoch()));
    // Kept for the workers: dropping the sender would end their term.
    tasks.spawn(async move { tx.closed().await });
    Ok((rx, None))
}

/// Opens the LB workers' gate once every cluster has listed completely, or after
/// `timeout` with those still unlisted named in the log.
async fn open_when_listed(
    clusters: Vec<StatusCell>,
    timeout: std::time::Duration,
    open: watch::Sender<bool>,
) {
    let all = futures::future::join_all(clusters.iter().map(StatusCell::wait_synced_once));
    if tokio::time::timeout(timeout, all).await.is_err() {
        let unlisted: Vec<String> = clusters
            .iter()
            .map(StatusCell::get)
            .filter(|s| s.state == ClusterState::NeverSynced)
            .map(|s| s.name)
            .collect();
        tracing::warn!(
            ?unlisted,
            ?timeout,
            "not every cluster listed in time: pushing without them (the LB loses what \
             it holds from them until they list)"
        );
    } else {
        tracing::info!("every cluster listed: pushing to the LBs");
    }
    open.send_replace(true);
    // Kept open for the workers: dropping the sender would close the channel.
    open.closed().await;
}

/// One kube client per configured cluster, made once at start and shared by the
/// watchers, the weights ConfigMap and the leader Lease (a client is a connection pool).
pub(crate) struct Clients(std::collections::BTreeMap<String, cluster::Connection>);

impl Clients {
    async fn connect(config: &ControllerConfig) -> Result<Self, ControllerError> {
        let mut clients = std::collections::BTreeMap::new();
        for c in &config.clusters {
            let client =
                cluster::client(&c.name, c.kubeconfig.as_deref(), c.context.as_deref()).await?;
            clients.insert(c.name.clone(), client);
        }
        Ok(Self(clients))
    }

    /// The client of a configured cluster.
    pub(crate) fn of(&self, cluster: &str) -> Result<kube::Client, ControllerError> {
        Ok(self.connection(cluster)?.client)
    }

    /// Every cluster's client, by name.
    fn all(&self) -> Vec<(String, kube::Client)> {
        self.0
            .iter()
            .map(|(name, c)| (name.clone(), c.client.clone()))
            .collect()
    }

    /// The client of a configured cluster and its API server's address.
    fn connection(&self, cluster: &str) -> Result<cluster::Connection, ControllerError> {
        self.0.get(cluster).cloned().ok_or_else(|| {
            ControllerError::Config(ConfigError::Invalid {
                field: "clusters".to_owned(),
                message: format!("{cluster:?} is not a configured cluster"),
            })
        })
    }
}

/// One set of watchers per cluster (objects, routability, nodes, staleness).
fn spawn_clusters(
    config: &ControllerConfig,
    clients: &Clients,
    reach: Vec<ReachWatch>,
    desired: &Arc<Desired>,
    watch: &WatchOptions,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<ClusterWatch>, ControllerError> {
    let mut clusters = Vec::new();
    for (c, reach) in config.clusters.iter().zip(reach) {
        let cluster::Connection { client, api_server } = clients.connection(&c.name)?;
        let name = ClusterName::new(&c.name);
        let watched = cluster::spawn(
            name.clone(),
            client.clone(),
            &api_server,
            desired.clone(),
            watch,
        );
        cluster::spawn_reach(
            &name,
            &client,
            desired,
            reach,
            watch,
            &watched.status,
            tasks,
        );
        if let Some(ttl) = c.stale_ttl {
            tasks.spawn(cluster::watch_stale(
                ClusterName::new(&c.name),
                client,
                desired.clone(),
                watched.status.clone(),
                ttl,
            ));
        }
        clusters.push(watched);
    }
    Ok(clusters)
}

/// A quarter of the admin listener's connections may be event streams.
fn event_slots(config: &ControllerConfig) -> Arc<tokio::sync::Semaphore> {
    let slots = (config.admin.max_connections / 4).max(1);
    Arc::new(tokio::sync::Semaphore::new(slots))
}

/// Every `kind: podgate` target instance, for the admin view's live counters.
fn live_sources(config: &ControllerConfig) -> Vec<super::ui::Source> {
    let mut out = Vec::new();
    for t in config
        .targets
        .iter()
        .filter(|t| t.kind == crate::lb::config::TargetKind::Podgate)
    {
        let token = t
            .token_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default();
        for url in t.url.iter().chain(&t.urls) {
            out.push(super::ui::Source {
                name: format!("{}/{url}", t.name),
                url: url.clone(),
                token: token.clone(),
            });
        }
    }
    out
}

type Gates = Vec<(ClusterName, Arc<crate::gate::Gated>)>;

/// The readiness gate of every cluster, and its webhook when configured (its address).
async fn spawn_gates(
    config: &ControllerConfig,
    clients: &Clients,
    gate: &crate::gate::GateOptions,
    tasks: &mut JoinSet<()>,
) -> Result<(Gates, Option<SocketAddr>), ControllerError> {
    let mut gates = Vec::new();
    for c in &config.clusters {
        let client = clients.of(&c.name)?;
        let name = ClusterName::new(&c.name);
        let gated = crate::gate::spawn(name.clone(), client, gate, tasks);
        gates.push((name, gated));
    }
    let webhook = match &config.readiness_gate.webhook {
        Some(webhook) => {
            let all = gates
                .iter()
                .map(|(c, g)| (c.to_string(), g.clone()))
                .collect();
            Some(crate::gate::webhook::start(webhook, all, tasks).await?)
        }
        None => None,
    };
    Ok((gates, webhook))
}

/// What the Index needs of the configuration.
fn index_config(config: &ControllerConfig) -> IndexConfig {
    IndexConfig {
        controller_name: config.controller_name.clone(),
        legacy_class: config.ingress_class.clone(),
        clusters: config
            .clusters
            .iter()
            .map(|c| (ClusterName::new(&c.name), c.weight))
            .collect(),
        gateway_controller_name: config.gateway_controller_name.clone(),
    }
}

/// Starts everything the configuration asks for.
pub async fn start(
    config: &ControllerConfig,
    options: RunOptions,
) -> Result<Controller, ControllerError> {
    config.validate()?;
    crate::process_metrics::mark_start();
    let mut index = Index::new(index_config(config));
    let reach = reachability(&mut index, config)?;
    let mut tasks = JoinSet::new();
    let hold_down = !config.hold_down.is_zero();
    index.dispatch(Input::HoldDown(hold_down));
    let desired = Desired::new(index);
    if hold_down {
        let holds = desired.take_holds();
        tasks.spawn(hold_down::run(desired.clone(), holds, config.hold_down));
    }
    let audit = Arc::new(Audit::new(1000));
    // Before any watcher or LB worker: the LB never sees configured weights that the
    // weights ConfigMap overrides.
    let clients = Clients::connect(config).await?;
    let weights = super::weights::start(config, &clients, &desired, &mut tasks).await?;

    let metrics = SyncMetrics::default();
    let (open_gate, listed) = watch::channel(false);
    let adapters = config.adapters()?;
    let lbs_fence = adapters.iter().all(|a| a.fences());
    let (leader, resign) = campaign(config, &clients, listed.clone(), lbs_fence, &mut tasks)?;
    let (term_tx, term) = watch::channel(None);
    tasks.spawn(publish_term(listed, leader, term_tx));
    let mut targets = Vec::new();
    for adapter in adapters {
        // The epoch comes with the term.
        let worker = Worker::new(
            adapter,
            desired.clone(),
            audit.clone(),
            options.sync.clone(),
            0,
        )
        .with_metrics(metrics.clone())
        .owned_by(config.owner())
        .gated_by(term.clone());
        targets.push(worker.status());
        tasks.spawn(worker.run());
    }

    let watch = WatchOptions {
        controller_name: config.controller_name.clone(),
        publish_addresses: config.publish_addresses.clone(),
        events: options.events,
        withdraw_guard: config.withdraw_guard,
        confirm_after: config.confirm_after,
        more_reports: Some(super::refusals::reports(targets.clone(), desired.clone())),
        lb_progress: Some(super::progress::of(targets.clone())),
        gateway_controller_name: config.gateway_controller_name.clone(),
        term: Some(term.clone()),
        routes_left_out: Some(super::refusals::routes_left_out(
            targets.clone(),
            desired.clone(),
        )),
    };
    let clusters = spawn_clusters(config, &clients, reach, &desired, &watch, &mut tasks)?;
    let gate = crate::gate::GateOptions {
        desired: desired.clone(),
        targets: targets.clone(),
        term: term.clone(),
        timeout: config.readiness_gate.timeout,
        controller: config.controller_name.clone(),
        events: options.events,
    };
    let (gates, webhook_addr) = spawn_gates(config, &clients, &gate, &mut tasks).await?;

    tasks.spawn(open_when_listed(
        clusters.iter().map(|c| c.status.clone()).collect(),
        config.initial_sync_timeout,
        open_gate,
    ));

    let admin = Arc::new(AdminState {
        desired: desired.clone(),
        clusters: clusters.iter().map(|c| c.status.clone()).collect(),
        targets,
        audit,
        metrics,
        weights,
        term,
        confirm_after: config.confirm_after,
        gates,
        clients: clients.all(),
        sessions: super::ui::Sessions::default(),
        live: super::ui::Live::new(live_sources(config)),
        allowed_hosts: config.admin.allowed_hosts.clone(),
        event_slots: event_slots(config),
    });
    let (admin_addr, health_addr) = serve_admin(config, &admin, &mut tasks).await?;
    tracing::info!(%admin_addr, clusters = config.clusters.len(), targets = config.targets.len(), leader_election = config.leader_election.is_some(), "controller started");
    Ok(Controller {
        admin_addr,
        health_addr,
        webhook_addr,
        desired,
        admin,
        resign,
        _clusters: clusters,
        _tasks: tasks,
    })
}
