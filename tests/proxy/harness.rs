//! Shared pieces of the proxy's end-to-end tests: tiny hyper backends, each on its own
//! loopback address like a pod, a started proxy, an admin client and model builders.
//! Everything runs over real TCP on 127.0.0.0/8; every wait has a deadline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podgate::proxy::{ProxyConfig, ProxyHandle};
use podgate_core::model::{
    Batch, Endpoint, EndpointState, HostPattern, PathMatch, PortRef, Route, RouteTable, Upstream,
    UpstreamKey, VirtualHost,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub(crate) const TOKEN: &str = "test-token";

/// A backend "pod": answers every request with its name, counts hits, can fail on
/// demand, and can be killed (listener and every connection closed).
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) failing: Arc<AtomicBool>,
    /// Requests to `/hold` wait until this is notified.
    pub(crate) release: Arc<tokio::sync::Notify>,
    tasks: Arc<std::sync::Mutex<JoinSet<()>>>,
}

impl Backend {
    /// Binds `127.1.{third}.{fourth}:0`.
    pub(crate) async fn start(name: &str, third: u8, fourth: u8) -> Self {
        let ip = Ipv4Addr::new(127, 1, third, fourth);
        let listener = TcpListener::bind((ip, 0)).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let failing = Arc::new(AtomicBool::new(false));
        let release = Arc::new(tokio::sync::Notify::new());
        let tasks = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let state = Arc::new(State {
            name: name.to_owned(),
            hits: Arc::clone(&hits),
            failing: Arc::clone(&failing),
            release: Arc::clone(&release),
        });
        let conns = Arc::clone(&tasks);
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                let service = service_fn(move |req: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(state.answer(req).await) }
                });
                conns.lock().unwrap().spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            connections,
            failing,
            release,
            tasks,
        }
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection, like a pod that died.
    pub(crate) fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    pub(crate) fn endpoint(&self, cluster: &str, state: EndpointState) -> Endpoint {
        endpoint_at(self.addr, cluster, state)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

type BackendBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What a backend's connections share.
struct State {
    name: String,
    hits: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<BackendBody> {
        if req.uri().path() == "/stream" {
            // "first" now, "second" only once released: a proxy that buffers whole
            // bodies cannot deliver "first" before the release.
            self.hits.fetch_add(1, Ordering::SeqCst);
            let release = Arc::clone(&self.release);
            let chunks = futures::stream::unfold(0u8, move |step| {
                let release = Arc::clone(&release);
                async move {
                    match step {
                        0 => Some((Bytes::from_static(b"first"), 1)),
                        1 => {
                            release.notified().await;
                            Some((Bytes::from_static(b"second"), 2))
                        }
                        _ => None,
                    }
                }
            });
            let body = http_body_util::StreamBody::new(futures::StreamExt::map(chunks, |b| {
                Ok::<_, Infallible>(hyper::body::Frame::data(b))
            }));
            return Response::new(BodyExt::boxed(body));
        }
        if req.uri().path() == "/hold" {
            // Counted while held, so a test can see that it arrived.
            self.hits.fetch_add(1, Ordering::SeqCst);
            self.release.notified().await;
            self.hits.fetch_sub(1, Ordering::SeqCst);
        }
        answer(req, &self.name, &self.hits, &self.failing)
            .await
            .map(BodyExt::boxed)
    }
}

async fn answer(
    req: Request<Incoming>,
    name: &str,
    hits: &AtomicUsize,
    failing: &AtomicBool,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut builder = Response::builder().header("x-backend", name);
    // Echo what the proxy sent, so tests can check header rewriting.
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "host",
        "connection",
        "keep-alive",
        "x-hop",
        "upgrade",
        "http2-settings",
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x-edit-set",
        "x-edit-add",
        "x-edit-gone",
    ] {
        if let Some(v) = req.headers().get(h) {
            builder = builder.header(format!("x-seen-{h}"), v);
        }
    }
    if failing.load(Ordering::SeqCst) {
        return builder
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from("failing")))
            .unwrap();
    }
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    let echoed = body.unwrap_or_default();
    let text = if echoed.is_empty() {
        format!("{name} {path}")
    } else {
        format!("{name} {path} {}", String::from_utf8_lossy(&echoed))
    };
    builder.body(Full::new(Bytes::from(text))).unwrap()
}

/// A proxy with short ejection times, bound on 127.0.0.1:0.
pub(crate) async fn proxy() -> ProxyHandle {
    proxy_with(|_| {}).await
}

pub(crate) async fn proxy_with(tweak: impl FnOnce(&mut ProxyConfig)) -> ProxyHandle {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ProxyConfig::new(local, local, TOKEN);
    config.outlier.consecutive_failures = 3;
    config.outlier.base_ejection_ms = 300;
    config.outlier.max_ejection_ms = 1_000;
    config.timeouts.connect_ms = 500;
    tweak(&mut config);
    podgate::proxy::start(config).await.expect("proxy starts")
}

/// A proxy routing every path of `host` to one upstream `web` of `endpoint`.
pub(crate) async fn routed(host: &str, endpoint: Endpoint) -> ProxyHandle {
    routed_with(|_| {}, host, endpoint).await
}

/// [`routed`], with the proxy configured by `tweak`.
pub(crate) async fn routed_with(
    tweak: impl FnOnce(&mut ProxyConfig),
    host: &str,
    endpoint: Endpoint,
) -> ProxyHandle {
    let proxy = proxy_with(tweak).await;
    push(
        &proxy,
        &Batch {
            upsert_upstreams: vec![upstream("web", &[], vec![endpoint])],
            routes: Some(routes(&[(host, PathMatch::prefix("/"), "web")])),
            ..Batch::default()
        },
    )
    .await;
    proxy
}

/// The endpoint `addr` of `cluster`, weight 1.
pub(crate) fn endpoint_at(addr: SocketAddr, cluster: &str, state: EndpointState) -> Endpoint {
    Endpoint {
        cluster: cluster.into(),
        address: addr.ip(),
        port: addr.port(),
        zone: None,
        node: None,
        state,
        weight: 1,
    }
}

/// A plain HTTP/1.1 client with keep-alive.
pub(crate) fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// What a request got back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }
}

pub(crate) async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Answer {
    let resp = client.request(req).await.expect("proxy answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET http://{proxy}{path}` with `Host: {host}`.
pub(crate) async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    proxy: &ProxyHandle,
    host: &str,
    path: &str,
) -> Answer {
    let req = Request::get(format!("http://{}{path}", proxy.http_addr))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, req).await
}

/// An admin API call; `token: None` sends no Authorization header.
pub(crate) async fn admin(
    proxy: &ProxyHandle,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", proxy.admin_url()));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let a = send(&client(), req).await;
    (a.status, a.body)
}

/// Pushes a batch with the right token; panics unless it is accepted.
pub(crate) async fn push(proxy: &ProxyHandle, batch: &Batch) {
    let body = serde_json::to_string(batch).unwrap();
    let (status, text) = admin(proxy, "POST", "/v1/batch", Some(TOKEN), &body).await;
    assert_eq!(status, StatusCode::OK, "batch refused: {text}");
}

pub(crate) fn key(service: &str) -> UpstreamKey {
    UpstreamKey::new("default", service, PortRef::Number(80))
}

pub(crate) fn upstream(
    service: &str,
    shares: &[(&str, u32)],
    endpoints: Vec<Endpoint>,
) -> Upstream {
    Upstream {
        health_check: None,
        key: key(service),
        shares: shares.iter().map(|(c, s)| ((*c).into(), *s)).collect(),
        endpoints,
    }
}

/// A route table from rows of (host, path rule, service).
pub(crate) fn routes(rows: &[(&str, PathMatch, &str)]) -> RouteTable {
    let mut hosts: BTreeMap<HostPattern, VirtualHost> = BTreeMap::new();
    for (host, path, service) in rows {
        let vhost = hosts.entry(HostPattern::parse(host).unwrap()).or_default();
        vhost.routes.push(Route {
            path: path.clone(),
            upstream: key(service),
        });
        vhost.routes.sort_by(|a, b| a.path.precedence(&b.path));
    }
    RouteTable {
        any_host: None,
        hosts,
        default_backend: None,
    }
}

/// Waits for `condition` to hold, checking every few milliseconds; panics after
/// `deadline` with `what`.
pub(crate) async fn eventually<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTP/2 connection with prior knowledge (h2c) to the proxy's plain listener.
pub(crate) async fn h2c(
    proxy: &ProxyHandle,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(proxy.http_addr)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}
