//! The controller's admin view: clusters (synced / stale / expired, relists held by the
//! floor guard), hosts, paths, upstreams, every pod with its cluster and state, clusters
//! held down after recovering, each LB target's sync state, diagnostics and the audit
//! ring.
//! Read-only for now; never shows secret material (certificates by id only).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::cluster::{ClusterStatus, StatusCell};
use crate::index::{Hold, Report};
use crate::model::{RouteTable, Upstream};
use crate::sync::{Audit, AuditEntry, Desired, TargetStatus};

/// Everything the admin view reads.
pub struct AdminState {
    pub desired: Arc<Desired>,
    pub clusters: Vec<StatusCell>,
    pub targets: Vec<Arc<Mutex<TargetStatus>>>,
    pub audit: Arc<Audit>,
}

#[derive(Serialize)]
struct ClusterView {
    #[serde(flatten)]
    status: ClusterStatus,
    weight: u32,
}

/// `GET /v1/state`.
#[derive(Serialize)]
struct StateView {
    generation: u64,
    clusters: Vec<ClusterView>,
    targets: Vec<TargetStatus>,
    routes: RouteTable,
    upstreams: Vec<Arc<Upstream>>,
    /// Clusters kept out of an upstream by the hold-down after recovering.
    holds: Vec<Hold>,
    diagnostics: Vec<Report>,
    audit: Vec<AuditEntry>,
}

impl AdminState {
    fn view(&self) -> StateView {
        let snapshot = self.desired.snapshot();
        let (weights, diagnostics, holds) = self
            .desired
            .read(|i| (i.cluster_weights(), i.diagnostics(), i.holds()));
        let clusters = self
            .clusters
            .iter()
            .map(|c| {
                let status = c.get();
                let weight = weights
                    .iter()
                    .find(|(n, _)| n.as_str() == status.name)
                    .map_or(0, |(_, w)| *w);
                ClusterView { status, weight }
            })
            .collect();
        StateView {
            generation: snapshot.generation,
            clusters,
            targets: self.targets.iter().map(|t| lock(t).clone()).collect(),
            routes: snapshot.route_table(),
            upstreams: snapshot.upstream_list(),
            holds,
            diagnostics,
            audit: self.audit.entries(),
        }
    }

    /// Ready once every cluster has completed its first full list.
    fn ready(&self) -> bool {
        self.clusters
            .iter()
            .all(|c| c.get().state != "never_synced")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/state") => match serde_json::to_vec_pretty(&state.view()) {
            Ok(body) => respond(StatusCode::OK, "application/json", body),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("cannot encode state: {e}\n"),
            ),
        },
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") if state.ready() => {
            respond(StatusCode::OK, "text/plain", "ready\n")
        }
        (&Method::GET, "/readyz") => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "waiting for the first list of every cluster\n",
        ),
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            super::metrics::render(&state.view_for_metrics()),
        ),
        (_, "/v1/state" | "/healthz" | "/readyz" | "/metrics") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: see /v1/state, /healthz, /readyz, /metrics\n",
        ),
    }
}

impl AdminState {
    fn view_for_metrics(&self) -> super::metrics::Inputs {
        let snapshot = self.desired.snapshot();
        super::metrics::Inputs {
            clusters: self.clusters.iter().map(StatusCell::get).collect(),
            targets: self.targets.iter().map(|t| lock(t).clone()).collect(),
            upstreams: snapshot.upstream_list(),
        }
    }
}

/// Binds `addr` and serves until the task is dropped. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<AdminState>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handle(&state, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
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
