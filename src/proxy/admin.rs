//! Admin API v1: the LB contract, served on its own listener.
//!
//! Owns: the admin routes ([`ADMIN_ROUTES`], documented in
//! `docs/lb-contract.openapi.yaml`), bearer-token auth with a constant-time compare,
//! decoding and answering batches, state, health and metrics. Must never change state on
//! a refused request, and never return key material.

use crate::admin_http;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::body::{ProxyBody, full};
use super::config::Token;
use super::metrics::Metrics;
use super::state::{ApplyError, Store};
use podgate_core::model::{Batch, PortRef, UpstreamKey};

/// One upstream: what a caller polls to see one change land without reading the whole
/// state. `{name}` matches one non-empty path segment.
const UPSTREAM_ROUTE: &str = "/v1/upstreams/{namespace}/{service}/{port}";

/// Every (method, path) the admin API serves, and whether it needs the token. A path
/// segment `{name}` matches any one non-empty segment.
pub const ADMIN_ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/batch", true),
    ("GET", "/v1/state", true),
    ("GET", "/v1/summary", true),
    ("GET", UPSTREAM_ROUTE, true),
    ("GET", "/healthz", false),
    ("GET", "/readyz", false),
    ("GET", "/metrics", true),
];

/// `GET /v1/state?endpoints=true|false` (default true); any other value is refused
/// rather than read as one of the two.
fn endpoints_wanted(query: Option<&str>) -> Result<bool, &'static str> {
    let mut wanted = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "endpoints" {
            wanted = match value {
                "true" => true,
                "false" => false,
                _ => return Err("query parameter endpoints must be true or false"),
            };
        }
    }
    Ok(wanted)
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `admin.listen`: every route, the token where [`ADMIN_ROUTES`] says so.
    Admin,
    /// `health_listen`: only `/metrics`, `/healthz` and `/readyz`, all without the
    /// token (for Prometheus and probes); nothing there can change state.
    Health,
}

/// What the health listener serves.
const HEALTH_ROUTES: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// `GET /v1/upstreams/...`: the upstream and its endpoints' live counters.
#[derive(Debug, Serialize)]
struct UpstreamView {
    #[serde(flatten)]
    upstream: podgate_core::model::Upstream,
    live: Vec<super::balancer::EndpointLive>,
}

/// The body of every admin error answer.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    /// On 409: the epoch already accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Admin {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    token: Token,
    max_body: usize,
}

impl Admin {
    pub(crate) fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        token: Token,
        max_body: usize,
    ) -> Self {
        Self {
            store,
            metrics,
            token,
            max_body,
        }
    }

    pub(crate) async fn handle(&self, req: Request<Incoming>, scope: Scope) -> Response<ProxyBody> {
        let path = req.uri().path().to_owned();
        if scope == Scope::Health && !HEALTH_ROUTES.contains(&path.as_str()) {
            return error(
                StatusCode::NOT_FOUND,
                "only /metrics, /healthz and /readyz are served here; the admin API is on admin.listen",
                None,
            );
        }
        let known: Vec<_> = ADMIN_ROUTES
            .iter()
            .filter(|r| matches_template(r.1, &path))
            .collect();
        let Some(&&(_, template, needs_token)) =
            known.iter().find(|r| r.0 == req.method().as_str())
        else {
            if known.is_empty() {
                return error(StatusCode::NOT_FOUND, "no such admin path", None);
            }
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here",
                None,
            );
            // RFC 9110 §15.5.6: a 405 says what is allowed.
            let allowed: Vec<&str> = known.iter().map(|r| r.0).collect();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            return resp;
        };
        if needs_token && scope == Scope::Admin && !self.authorized(&req) {
            tracing::warn!(%path, "admin request without a valid token refused");
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
                None,
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        match (req.method().clone(), template) {
            (Method::POST, "/v1/batch") => self.batch(req).await,
            (Method::GET, "/v1/state") => match endpoints_wanted(req.uri().query()) {
                Ok(endpoints) => json(StatusCode::OK, &self.store.state(endpoints)),
                Err(reason) => error(StatusCode::BAD_REQUEST, reason, None),
            },
            (Method::GET, "/v1/summary") => json(StatusCode::OK, &self.store.summary()),
            (Method::GET, UPSTREAM_ROUTE) => self.upstream(&path),
            (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
            (Method::GET, "/readyz") => {
                if self.store.load().complete {
                    text(StatusCode::OK, "ready\n".into())
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no full state yet: waiting for a controller's full sync\n".into(),
                    )
                }
            }
            (Method::GET, "/metrics") => {
                let mut resp = text(StatusCode::OK, self.metrics.encode());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin path", None),
        }
    }

    /// `GET /v1/upstreams/{namespace}/{service}/{port}`: the upstream, or 404. A port
    /// of digits is a port number, anything else a port name (as the Ingress wrote it).
    fn upstream(&self, path: &str) -> Response<ProxyBody> {
        let mut segments = path.trim_start_matches("/v1/upstreams/").split('/');
        let (Some(namespace), Some(service), Some(port), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return error(StatusCode::NOT_FOUND, "no such admin path", None);
        };
        let port = port
            .parse::<u16>()
            .map_or_else(|_| PortRef::from(port), PortRef::Number);
        let key = UpstreamKey::new(namespace, service, port);
        match self.store.upstream_live(&key) {
            Some((upstream, live)) => json(StatusCode::OK, &UpstreamView { upstream, live }),
            None => error(StatusCode::NOT_FOUND, &format!("no upstream {key}"), None),
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        admin_http::bearer_matches(req.headers(), self.token.as_bytes())
    }

    async fn batch(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let bytes: Bytes = match Limited::new(req.into_body(), self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                self.metrics
                    .batch("invalid", self.store.summary().generation);
                let status = if e.is::<http_body_util::LengthLimitError>() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                tracing::warn!(error = %e, "unreadable batch body refused");
                return error(status, &format!("cannot read the body: {e}"), None);
            }
        };
        let batch: Batch = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => {
                self.metrics
                    .batch("invalid", self.store.summary().generation);
                tracing::warn!(error = %e, "malformed batch refused");
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed batch: {e}"),
                    None,
                );
            }
        };
        let removed = batch.remove_upstreams.clone();
        match self.store.apply(batch) {
            Ok(summary) => {
                self.metrics.batch("accepted", summary.generation);
                // Removals of another owner's upstreams were ignored: those stay.
                for key in removed.iter().filter(|k| !self.store.holds(k)) {
                    self.metrics.forget(key);
                }
                let live = self.store.load();
                self.metrics.live_state(&live);
                tracing::info!(
                    generation = summary.generation,
                    epoch = summary.epoch,
                    "batch applied"
                );
                json(StatusCode::OK, &summary)
            }
            Err(ApplyError::StaleEpoch { got, seen }) => {
                self.metrics.batch("stale", self.store.summary().generation);
                tracing::warn!(got, seen, "batch with a stale epoch refused");
                let msg = ApplyError::StaleEpoch { got, seen }.to_string();
                error(StatusCode::CONFLICT, &msg, Some(seen))
            }
            Err(e @ ApplyError::Invalid(_)) => {
                self.metrics
                    .batch("invalid", self.store.summary().generation);
                tracing::warn!(error = %e, "invalid batch refused");
                error(StatusCode::BAD_REQUEST, &e.to_string(), None)
            }
        }
    }
}

/// Whether `path` matches `template`: equal segments, and `{name}` in the template
/// matches any one non-empty segment.
fn matches_template(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps))
                if ts == ps || (ts.starts_with('{') && ts.ends_with('}') && !ps.is_empty()) => {}
            _ => return false,
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    admin_http::respond(status, "text/plain; charset=utf-8", full(body))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ProxyBody> {
    admin_http::json(status, value, admin_http::Style::Compact, full)
}

fn error(status: StatusCode, message: &str, epoch: Option<u64>) -> Response<ProxyBody> {
    json(
        status,
        &ErrorBody {
            error: message,
            epoch,
        },
    )
}
