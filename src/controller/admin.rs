//! The controller's admin view: clusters (synced / stale / expired, relists held by the
//! floor guard), hosts, paths, upstreams, every pod with its cluster and state, clusters
//! held down after recovering, each LB target's sync state, diagnostics and the audit
//! ring. Read-only except for the weights routes (`controller::weights`); never shows
//! secret material (certificates by id only).

use crate::admin_http;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::cluster::{ClusterState, ClusterStatus, StatusCell};
use crate::hub::Desired;
use crate::sync::{Audit, AuditEntry, SyncMetrics, TargetStatus};
use podgate_core::index::{Hold, Kind, Report};
use podgate_core::model::{RouteTable, Upstream};

/// Everything the admin view reads.
pub struct AdminState {
    pub(crate) desired: Arc<Desired>,
    pub clusters: Vec<StatusCell>,
    pub targets: Vec<Arc<Mutex<TargetStatus>>>,
    pub audit: Arc<Audit>,
    pub(crate) metrics: SyncMetrics,
    /// Run-time weights and migrations (`/v1/weights`, `/v1/migrations`).
    pub(crate) weights: Arc<super::weights::Weights>,
    /// `Some(epoch)` while this replica pushes to the LBs (it leads and has listed).
    pub(crate) term: crate::sync::Term,
    /// `confirm_after` of the floor guard, for its metrics.
    pub(crate) confirm_after: std::time::Duration,
    /// Each cluster's readiness gate (`/v1/readiness-gate`).
    pub(crate) gates: Vec<(podgate_core::model::ClusterName, Arc<crate::gate::Gated>)>,
    /// Each cluster's client, to look a pod up by name (`/v1/why?pod=`).
    pub(crate) clients: Vec<(String, kube::Client)>,
    /// The web UI's logins.
    pub(crate) sessions: super::ui::Sessions,
    /// The built-in proxies' live counters, for the apps view.
    pub(crate) live: super::ui::Live,
    /// `admin.allowed_hosts`.
    pub(crate) allowed_hosts: Vec<String>,
    /// Open `/v1/events` streams at most (a quarter of `admin.max_connections`).
    pub(crate) event_slots: Arc<tokio::sync::Semaphore>,
}

/// `GET /v1/clusters`: one cluster.
#[derive(Serialize)]
pub(crate) struct ClusterView {
    #[serde(flatten)]
    pub(crate) status: ClusterStatus,
    pub(crate) weight: u32,
    /// Objects the Index holds for this cluster, by kind.
    pub(crate) objects: BTreeMap<Kind, usize>,
}

/// `GET /v1/state`: everything at once.
#[derive(Serialize)]
struct StateView {
    generation: u64,
    /// Whether this replica pushes to the LBs now (it holds the Lease, if leader
    /// election is on, and every cluster has listed), and with which fencing epoch.
    pushing: bool,
    epoch: Option<u64>,
    clusters: Vec<ClusterView>,
    targets: Vec<TargetStatus>,
    routes: RouteTable,
    upstreams: Vec<Arc<Upstream>>,
    /// Clusters kept out of an upstream by the hold-down after recovering.
    holds: Vec<Hold>,
    diagnostics: Vec<Report>,
    audit: Vec<AuditEntry>,
    weights: super::weights::WeightsView,
}

impl AdminState {
    fn view(&self) -> StateView {
        let snapshot = self.desired.snapshot();
        let epoch = *self.term.borrow();
        StateView {
            generation: snapshot.generation,
            pushing: epoch.is_some(),
            epoch,
            clusters: self.clusters(),
            targets: self.targets(),
            routes: snapshot.route_table(),
            upstreams: snapshot.upstream_list(),
            holds: self.desired.read(podgate_core::index::Index::holds),
            diagnostics: self.desired.read(podgate_core::index::Index::diagnostics),
            audit: self.audit.entries(),
            weights: self.weights.view(),
        }
    }

    pub(crate) fn clusters(&self) -> Vec<ClusterView> {
        self.desired.read(|index| {
            let weights = index.cluster_weights();
            self.clusters
                .iter()
                .map(|c| {
                    let status = c.get();
                    let configured = weights.iter().find(|(n, _)| n.as_str() == status.name);
                    ClusterView {
                        weight: configured.map_or(0, |(_, w)| *w),
                        objects: configured
                            .map(|(n, _)| index.object_counts(n))
                            .unwrap_or_default(),
                        status,
                    }
                })
                .collect()
        })
    }

    pub(crate) fn targets(&self) -> Vec<TargetStatus> {
        self.targets.iter().map(|t| t.lock().clone()).collect()
    }

    fn metrics_inputs(&self) -> super::metrics::Inputs {
        super::metrics::Inputs {
            clusters: self.clusters.iter().map(StatusCell::get).collect(),
            targets: self.targets(),
            upstreams: self.desired.snapshot().upstream_list(),
            sync: self.metrics.clone(),
            holds: self.desired.read(podgate_core::index::Index::holds),
            pushing: self.term.borrow().is_some(),
            confirm_after: self.confirm_after,
            gates: crate::gate::counts(&self.gates),
        }
    }

    /// Ready once every cluster has completed its first full list.
    fn ready(&self) -> bool {
        self.clusters
            .iter()
            .all(|c| c.get().state != ClusterState::NeverSynced)
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    admin_http::respond(status, content_type, Full::new(body.into()))
}

fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    admin_http::json(StatusCode::OK, value, admin_http::Style::Pretty, Full::new)
}

/// Every route `handle` answers (all `GET`); `controller::weights` serves
/// `/v1/weights` and `/v1/migrations` before it.
const ROUTES: &[&str] = &[
    "/v1/weights",
    "/v1/migrations",
    "/v1/state",
    "/v1/clusters",
    "/v1/routes",
    "/v1/upstreams",
    "/v1/targets",
    "/v1/readiness-gate",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `admin.listen`: the whole admin view and its writes.
    Admin,
    /// `health_listen`: `/metrics`, `/healthz` and `/readyz` alone, for probes and
    /// Prometheus on a pod address, where the write API must not be reachable.
    Health,
}

/// What the health listener serves.
const HEALTH_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

fn handle(state: &AdminState, req: &Request<Incoming>, scope: Scope) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if scope == Scope::Health && !HEALTH_ROUTES.contains(&path) {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("not found; routes: {}\n", HEALTH_ROUTES.join(" ")),
        );
    }
    if req.method() != Method::GET {
        return if ROUTES.contains(&path) {
            respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            )
        } else {
            respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                format!("not found; routes: {}\n", ROUTES.join(" ")),
            )
        };
    }
    match path {
        "/v1/state" => json(&state.view()),
        "/v1/clusters" => json(&state.clusters()),
        "/v1/routes" => json(&state.desired.snapshot().route_table()),
        "/v1/upstreams" => json(&state.desired.snapshot().upstream_list()),
        "/v1/targets" => json(&state.targets()),
        "/v1/readiness-gate" => json(&crate::gate::view(&state.gates)),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if state.ready() => respond(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "waiting for the first list of every cluster\n",
        ),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            super::metrics::render(&state.metrics_inputs()),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("not found; routes: {}\n", ROUTES.join(" ")),
        ),
    }
}

/// Every request of the admin listener: writes from another origin are refused first;
/// then the web UI, the weights routes, the rest.
async fn route(
    state: &Arc<AdminState>,
    req: Request<Incoming>,
    scope: Scope,
) -> Response<super::ui::Body> {
    let path = req.uri().path();
    if scope == Scope::Admin {
        // Probes and scrapes name whatever host they were configured with; they read
        // nothing a rebinding page could use.
        if !HEALTH_ROUTES.contains(&path)
            && !super::ui::session::allowed_host(req.headers(), &state.allowed_hosts)
        {
            tracing::warn!(%path, "admin request for another host refused");
            return admin_http::respond(
                StatusCode::FORBIDDEN,
                "application/json",
                super::ui::full(
                    r#"{"error":"this Host is not the admin listener's: use its address, or add the name to admin.allowed_hosts"}"#,
                ),
            );
        }
        let write = !matches!(*req.method(), Method::GET | Method::HEAD);
        if write && !super::ui::session::same_origin(req.headers()) {
            tracing::warn!(%path, "admin write from another origin refused");
            return admin_http::respond(
                StatusCode::FORBIDDEN,
                "application/json",
                super::ui::full(r#"{"error":"a write from another origin is refused"}"#),
            );
        }
        if super::ui::owns(path) {
            return super::ui::handle(state, req).await;
        }
        if super::weights::owns(path) {
            let session = state.sessions.authenticates(req.headers());
            return super::weights::handle(&state.weights, req, session)
                .await
                .map(http_body_util::BodyExt::boxed_unsync);
        }
    }
    handle(state, &req, scope).map(http_body_util::BodyExt::boxed_unsync)
}

/// Binds `addr` and serves `scope` until the task is dropped. Returns the bound
/// address. HTTP/1.1 only (what the CLI and browsers speak here), so that hyper's
/// header-read timeout bounds every connection: before its first request, between
/// requests, and while a head arrives; `max_connections` caps them (per listener).
pub(crate) async fn serve(
    addr: SocketAddr,
    scope: Scope,
    config: &super::config::AdminConfig,
    state: Arc<AdminState>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let header_read = config.header_read_timeout;
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&state, req, scope).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_read);
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            });
        }
    });
    Ok((bound, task))
}
