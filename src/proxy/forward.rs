//! Forwarding one client request to one upstream endpoint, with bounded retries.
//!
//! Owns: route lookup on one snapshot load and endpoint choice ([`Forwarder::route_fast`],
//! [`Forwarder::pick`], [`Forwarder::failed`] — shared with the fast path in `h1`), and
//! the general request path through hyper: header rewriting, the pooled keep-alive
//! client to upstreams, retries on another endpoint
//! when nothing was sent (connect error) or the request is idempotent and its body
//! unsent, outcome reporting for outlier ejection, and Upgrade (WebSocket) tunnels.
//! Must never buffer a body, panic, or answer a failure without a clean status and a
//! log line.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::timed_connect::{ConnectTime, TimedConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::access_log::AccessLog;
use super::balancer::{Backend, InFlight, PickError, Pool};
use super::body::{BodySlot, ClientBody, Counted, Guarded, ProxyBody, RetryBody, full};
use super::config::ProxyConfig;
use super::headers;
use super::metrics::Metrics;
use super::record::{self, Record};
use super::rules;
use super::state::Store;
use podgate_core::model::{HttpRule, RuleFilter, UpstreamKey};

/// Shared by every connection of every listener.
#[derive(Debug)]
pub(crate) struct Forwarder {
    client: Client<TimedConnector, RetryBody>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    log: Arc<AccessLog>,
    config: ProxyConfig,
    /// One slot per upgraded connection (WebSocket) still open: its client connection
    /// has ended for hyper, so the drain at shutdown counts the tunnel here.
    pub(crate) tunnels: Arc<tokio::sync::Semaphore>,
}

/// Where a request goes: the upstream, its pool, and the Gateway API rule whose
/// filters apply (none for Ingress routes).
type Routed = (UpstreamKey, Arc<Pool>, Option<Arc<rules::CompiledRule>>);

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: bool,
}

impl Forwarder {
    pub(crate) fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        log: Arc<AccessLog>,
        config: ProxyConfig,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeouts.connect()));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.timeouts.upstream_idle())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(TimedConnector(connector));
        let tunnels = Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections));
        Self {
            client,
            store,
            metrics,
            log,
            config,
            tunnels,
        }
    }

    /// Answers one client request. Never fails: every error becomes a response. The
    /// request is recorded once the answer's body has gone out.
    pub(crate) async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ProxyBody> {
        let mut record = Record::start(&self.log, |log| log_head(&req, peer, log));
        let response = self.forward(req, peer, &mut record).await;
        let status = response.status().as_u16();
        self.metrics.request(status);
        let (metrics, log) = (Arc::clone(&self.metrics), Arc::clone(&self.log));
        response.map(|body| {
            Counted::wrap(body, move |sent| {
                record.sent = sent;
                record.finish(status, &metrics, &log);
            })
        })
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: Peer,
        record: &mut Record,
    ) -> Response<ProxyBody> {
        let Some(host_value) = request_host(&req) else {
            return reply(StatusCode::BAD_REQUEST, "request has no valid Host");
        };
        let Ok(host) = host_value.to_str() else {
            return reply(StatusCode::BAD_REQUEST, "request has no valid Host");
        };
        // Two Hosts: the next hop might route by the other one.
        if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
            return reply(
                StatusCode::BAD_REQUEST,
                "request has more than one Host header",
            );
        }
        let normalized = (self.config.normalize_paths
            && super::path::needs_normalizing(req.uri().path()))
        .then(|| super::path::normalize(req.uri().path()));
        let path = normalized.as_deref().unwrap_or(req.uri().path());
        let (key, pool, rule) = match self.route_request(host, path, &req, peer.tls) {
            Ok(routed) => routed,
            Err(answer) => return *answer,
        };
        record.pool = Some(Arc::clone(&pool));
        let rewritten = rule.as_deref().and_then(|r| rewritten_path(r, path));

        let upgrade = headers::upgrade_protocol(req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut head = parts.headers;
        headers::strip_hop_by_hop(&mut head, upgrade);
        let client =
            headers::Forwarded::new(peer.addr.ip(), peer.tls, self.config.trusts(peer.addr.ip()));
        headers::add_forwarded(&mut head, &client, host_value.clone());
        // The host the request was routed by: HTTP/2 carries it in :authority and an
        // absolute-form target overrides Host; HTTP/1.1 upstreams need it as Host.
        head.insert(header::HOST, host_value);
        if let Some(r) = &rule {
            request_headers(r, &mut head);
        }
        let original = parts.uri.path_and_query();
        let path_and_query = match (rewritten.or(normalized), original) {
            // Forwarded as routed: the upstream must not see the segments it skipped.
            (Some(path), original) => {
                let query = original.and_then(http::uri::PathAndQuery::query);
                let text = match query {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                match http::uri::PathAndQuery::try_from(text) {
                    Ok(pq) => pq,
                    Err(_) => return reply(StatusCode::BAD_REQUEST, "malformed request target"),
                }
            }
            (None, Some(pq)) => pq.clone(),
            (None, None) => http::uri::PathAndQuery::from_static("/"),
        };
        let body = BodySlot::new(body);
        record.client_body = Some(body.clone());
        let attempt = Attempt {
            method: parts.method,
            path_and_query,
            headers: head,
            body,
        };
        let outcome = self.attempts(&key, &pool, &attempt, record).await;
        match outcome {
            Ok((mut resp, in_flight)) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_side) = client_upgrade
                {
                    let upstream_side = hyper::upgrade::on(&mut resp);
                    // Tunnels are bounded by the connection cap, so a slot is free.
                    let slot = Arc::clone(&self.tunnels).try_acquire_owned().ok();
                    tokio::spawn(async move {
                        let _slot = slot;
                        tunnel(client_side, upstream_side, in_flight).await;
                    });
                    let (parts, _) = resp.into_parts();
                    return Response::from_parts(parts, full(""));
                }
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    crate::logging::warn_limited!(upstream = %key, "upstream switched protocols unasked");
                    return reply(
                        StatusCode::BAD_GATEWAY,
                        "upstream switched protocols unasked",
                    );
                }
                let (mut parts, body) = resp.into_parts();
                // Both framings: hyper read the body by Transfer-Encoding (RFC 9112
                // §6.3), so the length must not frame it towards the client.
                if parts.headers.contains_key(header::TRANSFER_ENCODING) {
                    parts.headers.remove(header::CONTENT_LENGTH);
                }
                headers::strip_hop_by_hop(&mut parts.headers, None);
                for f in rule.iter().flat_map(|r| &r.filters) {
                    if let RuleFilter::ResponseHeaders(edits) = f {
                        rules::edit(&mut parts.headers, edits);
                    }
                }
                Response::from_parts(parts, Guarded::wrap(body, in_flight))
            }
            Err(resp) => resp,
        }
    }

    /// Where a request on the general path goes: through the host's Gateway API
    /// rules when it has any (a redirect, a 500 for an unresolved share, or an
    /// upstream with the rule whose filters apply), else as [`Self::route`].
    fn route_request(
        &self,
        host: &str,
        path: &str,
        req: &Request<Incoming>,
        tls: bool,
    ) -> Result<Routed, Box<Response<ProxyBody>>> {
        let snap = self.store.load();
        let query = req.uri().query();
        let found = rules::first_match(
            snap.router.rules(host),
            req.method(),
            path,
            req.headers(),
            query,
        );
        let Some(rule) = found else {
            // The Ingress routes, on the same snapshot.
            return match upstream_of(&snap, snap.router.route(host, path), host, path) {
                Ok((key, pool)) => Ok((key, pool, None)),
                Err(refusal) => Err(Box::new(refusal.into_response())),
            };
        };
        if let Some(r) = rule.redirect() {
            return Err(Box::new(rules::redirect(r, rule, tls, host, path, query)));
        }
        let Some(key) = rules::pick_backend(rule) else {
            return Err(Box::new(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this share of the route has no backend (a reference that does not resolve, or weight 0)",
            )));
        };
        let Some(pool) = snap.upstreams.get(key) else {
            crate::logging::warn_limited!(%host, path, upstream = %key, "rule names an unknown upstream");
            return Err(Box::new(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("upstream {key} is not configured"),
            )));
        };
        Ok((key.clone(), Arc::clone(pool), Some(Arc::clone(rule))))
    }

    /// [`Self::route`] for the fast path; `None` when the host has Gateway API rules
    /// (they match on more than the path and edit what is forwarded: the general path
    /// serves them).
    pub(crate) fn route_fast(
        &self,
        host: &str,
        path: &str,
    ) -> Option<Result<(UpstreamKey, Arc<Pool>), Refusal>> {
        let snap = self.store.load();
        let key = snap.router.route_without_rules(host, path).ok()?;
        Some(upstream_of(&snap, key, host, path))
    }

    /// An endpoint of `pool` not in `tried`, with its in-flight slot taken.
    pub(crate) fn pick(
        key: &UpstreamKey,
        pool: &Pool,
        tried: &[SocketAddr],
    ) -> Result<(Arc<Backend>, InFlight), Refusal> {
        pool.pick(tried).map_err(|e| match e {
            PickError::NoActiveEndpoint => {
                crate::logging::warn_limited!(upstream = %key, "no active endpoint");
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("upstream {key} has no active endpoint"),
                )
            }
            PickError::AllTried => Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!("every endpoint of upstream {key} failed"),
            ),
        })
    }

    pub(crate) fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Tries endpoints until one answers, a retry is not allowed, or retries run out.
    async fn attempts(
        &self,
        key: &UpstreamKey,
        pool: &Pool,
        attempt: &Attempt,
        record: &mut Record,
    ) -> Result<(Response<Incoming>, InFlight), Response<ProxyBody>> {
        let idempotent = idempotent(attempt.method.as_str());
        let mut tried: Vec<SocketAddr> = Vec::new();
        loop {
            let (backend, in_flight) =
                Self::pick(key, pool, &tried).map_err(Refusal::into_response)?;
            tried.push(backend.addr);
            record.endpoint = Some(Arc::clone(&backend));
            let request = match attempt.build(&backend.authority) {
                Ok(r) => r,
                Err(e) => {
                    crate::logging::warn_limited!(error = %e, "cannot build the upstream request");
                    return Err(reply(StatusCode::BAD_REQUEST, "malformed request target"));
                }
            };
            let sent = tokio::time::timeout(
                self.config.timeouts.upstream_response(),
                self.client.request(request),
            )
            .await;
            let error = match sent {
                Ok(Ok(resp)) => {
                    if let Some(took) = resp
                        .extensions()
                        .get::<ConnectTime>()
                        .and_then(ConnectTime::take)
                        && let Some(m) = pool.metrics(&self.metrics)
                    {
                        m.connected(took);
                    }
                    if resp.status().is_server_error() {
                        self.failed(pool, &backend);
                    } else {
                        backend.stats.success();
                    }
                    return Ok((resp, in_flight));
                }
                Ok(Err(e)) => e,
                // Still waiting for the client's body: the client is slow, not the
                // endpoint.
                Err(_) if attempt.body.client_body() == ClientBody::Pending => {
                    tracing::debug!(upstream = %key, "client body not received in time");
                    return Err(reply(
                        StatusCode::REQUEST_TIMEOUT,
                        "request body not received in time",
                    ));
                }
                Err(_) => {
                    self.failed(pool, &backend);
                    crate::logging::warn_limited!(upstream = %key, endpoint = %backend.addr, "upstream response timed out");
                    return Err(Refusal::timed_out().into_response());
                }
            };
            if attempt.body.client_body() == ClientBody::Failed {
                // A bad chunk or an aborted upload: the client's fault, never counted
                // against the endpoint (or anyone could eject endpoints at will).
                tracing::debug!(upstream = %key, error = %error_chain(&error), "client body failed");
                return Err(reply(
                    StatusCode::BAD_REQUEST,
                    "request body is malformed or incomplete",
                ));
            }
            self.failed(pool, &backend);
            let may_retry = attempt.body.unsent() && (error.is_connect() || idempotent);
            let attempts_left = tried.len() <= self.config.limits.retries;
            crate::logging::warn_limited!(
                upstream = %key,
                endpoint = %backend.addr,
                error = %error_chain(&error),
                retry = may_retry && attempts_left,
                "upstream request failed"
            );
            if !(may_retry && attempts_left) {
                return Err(Refusal::upstream_failed().into_response());
            }
            self.retried(pool, record);
        }
    }

    /// Counts a failed attempt on an endpoint, ejecting it after too many in a row.
    pub(crate) fn failed(&self, pool: &Pool, backend: &Backend) {
        self.metrics.upstream_failure();
        if let Some(duration) = backend.stats.failure(&self.config.outlier) {
            self.metrics.ejection();
            if let Some(m) = pool.metrics(&self.metrics) {
                m.ejection();
            }
            tracing::warn!(upstream = %pool.spec().key, endpoint = %backend.addr, ?duration, "endpoint ejected");
        }
    }

    /// Counts a retry of `record`'s request on another endpoint of `pool`.
    pub(crate) fn retried(&self, pool: &Pool, record: &mut Record) {
        self.metrics.retry();
        if let Some(m) = pool.metrics(&self.metrics) {
            m.retry();
        }
        record.retries += 1;
    }

    pub(crate) fn access_log(&self) -> &AccessLog {
        &self.log
    }
}

/// What the access log keeps of a request head on the general path.
fn log_head(req: &Request<Incoming>, peer: Peer, log: &AccessLog) -> record::Head {
    let uri = req.uri();
    let host = request_host(req)
        .and_then(|h| h.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    record::Head {
        at: std::time::SystemTime::now(),
        client: peer.addr,
        method: record::method_name(req.method().as_str()),
        host,
        path: uri.path().to_owned(),
        query: log.query.then(|| uri.query().map(str::to_owned)).flatten(),
        protocol: match req.version() {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        },
        headers: record::logged_headers(log, |name| {
            req.headers().get(name).map(HeaderValue::as_bytes)
        }),
    }
}

/// An answer the proxy gives itself instead of an upstream's.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: String) -> Self {
        Self { status, reason }
    }

    /// 504: the upstream sent no response head within `upstream_response`.
    pub(crate) fn timed_out() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream timed out".into())
    }

    /// 502: the attempt failed and no retry is left or allowed.
    pub(crate) fn upstream_failed() -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream request failed".into())
    }

    fn into_response(self) -> Response<ProxyBody> {
        reply(self.status, &self.reason)
    }
}

/// Everything needed to send the same request to several endpoints in turn.
struct Attempt {
    method: Method,
    path_and_query: http::uri::PathAndQuery,
    headers: http::HeaderMap,
    body: BodySlot,
}

impl Attempt {
    fn build(&self, authority: &Authority) -> Result<Request<RetryBody>, http::Error> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()?;
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .version(Version::HTTP_11)
            .body(self.body.attempt())?;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

/// Methods a retry may send twice (RFC 9110 §9.2.2).
pub(crate) fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// The request's host: `:authority` (HTTP/2, absolute-form) or the `Host` header.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(authority) = req.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}

/// The pool of the upstream a route names, or why there is none.
fn upstream_of(
    snap: &super::state::Snapshot,
    key: Option<&UpstreamKey>,
    host: &str,
    path: &str,
) -> Result<(UpstreamKey, Arc<Pool>), Refusal> {
    let Some(key) = key else {
        tracing::debug!(%host, path, "no route");
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no route for this host and path".into(),
        ));
    };
    let Some(pool) = snap.upstreams.get(key) else {
        crate::logging::warn_limited!(%host, path, upstream = %key, "route names an unknown upstream");
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("upstream {key} is not configured"),
        ));
    };
    Ok((key.clone(), Arc::clone(pool)))
}

/// Applies a rule's request header edits and Host rewrite to the forwarded head.
fn request_headers(rule: &HttpRule, head: &mut http::HeaderMap) {
    for f in &rule.filters {
        match f {
            RuleFilter::RequestHeaders(edits) => rules::edit(head, edits),
            RuleFilter::Rewrite(rw) => {
                let host = rw.hostname.as_deref().map(HeaderValue::from_str);
                if let Some(Ok(h)) = host {
                    head.insert(header::HOST, h);
                }
            }
            RuleFilter::ResponseHeaders(_) | RuleFilter::Redirect(_) => {}
        }
    }
}

/// The path a rule's URL rewrite forwards, if it rewrites the path.
fn rewritten_path(rule: &HttpRule, path: &str) -> Option<String> {
    rule.filters.iter().find_map(|f| match f {
        RuleFilter::Rewrite(rw) => rw.path.as_ref().map(|p| p.apply(&rule.path, path)),
        _ => None,
    })
}

/// Splices an upgraded client connection to the upgraded upstream connection.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _in_flight: InFlight,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            crate::logging::warn_limited!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// A short plain-text answer for a failure.
pub(crate) fn reply(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("{reason}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
