//! The HTTP side of the simulated Kubernetes API server (a test double).
//!
//! Owns the hyper 1 server on a loopback listener (plain HTTP/1.1 and h2c), request
//! dispatch to discovery / list / watch / writes, the request-level faults (latency,
//! forced 5xx) and stopping: a stopped server closes its listener and every open
//! connection, watches included. Answers are JSON with the real server's
//! `Cache-Control`; every refusal is a `Status` body, never a panic.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::resources::ResourceKind;
use super::route::{Query, Route, Target, parse};
use super::state::{Counters, Shared};
use super::status::ApiError;
use super::write::{Part, PatchKind};
use super::{delete, discovery, list, watch as watch_stream, write};

/// The real server's default request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

type Body = BoxBody<Bytes, io::Error>;

/// A running server; dropping it stops it.
pub(crate) struct Server {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>, addr: SocketAddr) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, addr, stopped));
        Self { stop, task }
    }

    /// Closes the listener and every connection, and waits until they are gone.
    pub(crate) async fn shutdown(mut self) {
        self.stop.send_replace(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    addr: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(shared.clone(), addr, req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = code;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// What the real server answers for a path of an API group it does not serve (no such
/// CRD installed): the Go mux's plain-text 404, not a `Status` (k8s-wire 13).
fn page_not_found() -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(b"404 page not found"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::NOT_FOUND;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_json())
}

async fn handle(
    shared: Arc<Shared>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Counters::bump(&shared.counters.requests);
    if !authorized(&shared, &req) {
        return Ok(error_response(&ApiError::unauthorized()));
    }
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = shared.faults.failing() {
        return Ok(error_response(&ApiError::injected(code)));
    }
    Ok(match dispatch(&shared, addr, req).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    })
}

/// Whether `req` carries the bearer token the server asks for (if it asks for one).
fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(token) = &shared.bearer_token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == token)
}

async fn dispatch(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let route = parse(req.uri().path());
    let is_get = req.method() == Method::GET;
    let registry = shared.registry();
    let group = match &route {
        Route::Group(g) | Route::ResourceList { group: g, .. } => Some(g.as_str()),
        Route::Resource(t) => Some(t.gvr.group.as_str()),
        _ => None,
    };
    if let Some(g) = group
        && !g.is_empty()
        && !registry
            .group_versions()
            .iter()
            .any(|(served, _)| served == g)
    {
        return Ok(page_not_found());
    }
    let doc = match route {
        Route::Resource(target) => return resource(shared, target, req).await,
        _ if !is_get => return Err(ApiError::method_not_allowed()),
        Route::Version => Some(discovery::version()),
        Route::CoreVersions => Some(discovery::core_versions(addr)),
        Route::GroupList => Some(discovery::group_list(&registry)),
        Route::Group(g) => discovery::group(&registry, &g),
        Route::ResourceList { group, version } => {
            discovery::resource_list(&registry, &group, &version)
        }
        Route::Unknown => None,
    };
    doc.map(|d| json_response(StatusCode::OK, &d))
        .ok_or_else(ApiError::no_route)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| ApiError::too_large())
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// Checks that the target fits the kind's scope and subresources.
fn kind_for(shared: &Shared, t: &Target) -> Result<Arc<ResourceKind>, ApiError> {
    let kind = shared
        .registry()
        .get(&t.gvr)
        .ok_or_else(ApiError::no_route)?;
    let scope_ok = if kind.namespaced {
        t.namespace.is_some() || t.name.is_none()
    } else {
        t.namespace.is_none()
    };
    let sub_ok = match t.subresource.as_deref() {
        None => true,
        Some("status") => kind.status_subresource,
        Some(_) => false,
    };
    if scope_ok && sub_ok {
        Ok(kind)
    } else {
        Err(ApiError::no_route())
    }
}

async fn resource(
    shared: &Arc<Shared>,
    t: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let kind = kind_for(shared, &t)?;
    if req.method() != Method::GET && dry_run(req.uri().query().unwrap_or("")) {
        // Better refused than silently persisted.
        return Err(ApiError::bad_request(
            "dryRun is not supported by the simulated API server",
        ));
    }
    let ns = t.namespace.as_deref();
    let part = if t.subresource.is_some() {
        Part::Status
    } else {
        Part::Main
    };
    let method = req.method().clone();
    let ok = |v: &Value| Ok(json_response(StatusCode::OK, v));
    match (method, t.name.as_deref()) {
        (Method::GET, None) => {
            let q = Query::parse(req.uri().query().unwrap_or(""))?;
            q.list.fields.check(&kind.kind)?;
            if q.watch || t.watch_path {
                let rx = watch_stream::start(shared.clone(), kind, ns, q.watch_query())?;
                return Ok(stream_response(rx));
            }
            Counters::bump(&shared.counters.lists);
            ok(&list::list(shared, &kind, ns, &q.list)?)
        }
        (Method::GET, Some(name)) => {
            let q = Query::parse(req.uri().query().unwrap_or(""))?;
            q.list.fields.check(&kind.kind)?;
            if q.watch || t.watch_path {
                let mut wq = q.watch_query();
                wq.fields = wq.fields.and_name(name);
                let rx = watch_stream::start(shared.clone(), kind, ns, wq)?;
                return Ok(stream_response(rx));
            }
            let key = super::store::key(ns, name);
            let obj = shared
                .store()
                .get(&kind.gvr, &key)
                .ok_or_else(|| ApiError::not_found(&kind.gvr, name))?;
            ok(&obj)
        }
        (Method::POST, None) => {
            let body = parse_json(&read_body(req).await?)?;
            let created = write::create(shared, &kind, ns, body)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let body = parse_json(&read_body(req).await?)?;
            ok(&*write::replace(shared, &kind, ns, name, body, part)?)
        }
        (Method::PATCH, Some(name)) => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let how = PatchKind::from_content_type(&ct)?;
            let body = read_body(req).await?;
            let (obj, created) = write::patch(shared, &kind, ns, name, how, &body, part)?;
            Ok(json_response(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &obj,
            ))
        }
        (Method::DELETE, Some(name)) if part == Part::Main => {
            let body = read_body(req).await?;
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_json(&body)?
            };
            ok(&*delete::delete(shared, &kind, ns, name, &options)?)
        }
        (Method::DELETE, None) => {
            let q = Query::parse(req.uri().query().unwrap_or(""))?;
            q.list.fields.check(&kind.kind)?;
            let deleted =
                delete::delete_collection(shared, &kind, ns, &q.list.labels, &q.list.fields);
            ok(&deleted)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Whether the query asks for a dry run (`dryRun=All`).
fn dry_run(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "dryRun" && !v.is_empty())
}

fn stream_response(rx: tokio::sync::mpsc::Receiver<watch_stream::Chunk>) -> Response<Body> {
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c.map(Frame::data), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    resp
}
