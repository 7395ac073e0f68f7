//! Listeners and connections: accept loops for plain HTTP (HTTP/1.1 and h2c), HTTPS
//! (ALPN h2 and http/1.1) and the admin API. Client connections start on the fast
//! HTTP/1.1 path (`h1`) and move to hyper when a request needs it; HTTPS connections
//! that negotiated h2 go to hyper directly.
//!
//! Owns: the connection cap, per-connection protocol settings (header limits, header
//! read timeout, TLS handshake timeout), TCP options, and graceful shutdown of accept
//! loops and open connections. Must never route or balance: every request goes to the
//! [`Forwarder`] or the [`Admin`] handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::admin::{Admin, Scope};
use super::body::ProxyBody;
use super::config::ProxyConfig;
use super::forward::{Forwarder, Peer};
use super::h1;
use super::idle::Activity;
use super::metrics::Metrics;

/// What every client-facing accept loop shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) forwarder: Arc<Forwarder>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) connections: Arc<Semaphore>,
    /// For the TLS handshake, the first request head, and a connection with nothing in
    /// flight (`timeouts.header_read_ms`).
    pub(crate) handshake_timeout: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The protocol settings of client connections.
pub(crate) fn builder(config: &ProxyConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let header_bytes = u32::try_from(config.limits.max_header_bytes).unwrap_or(u32::MAX);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.timeouts.header_read())
        .max_buf_size(config.limits.max_header_bytes)
        .max_headers(config.limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_bytes)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    b
}

/// Serves plain HTTP until shutdown.
pub(crate) async fn serve_plain(listener: TcpListener, shared: Shared) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let Some((stream, addr, permit)) =
            accept(&listener, &shared.connections, &mut shutdown).await
        else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = Peer { addr, tls: false };
            serve_proxied(stream, peer, &shared).await;
        });
    }
}

/// Serves HTTPS until shutdown. A failed handshake closes only that connection.
pub(crate) async fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, shared: Shared) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let Some((stream, addr, permit)) =
            accept(&listener, &shared.connections, &mut shutdown).await
        else {
            return;
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer { addr, tls: true };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_general(TokioIo::new(tls), peer, &shared).await;
            } else {
                serve_proxied(tls, peer, &shared).await;
            }
        });
    }
}

/// The next connection, with its slot under `connections` (`None`: shutdown).
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    loop {
        // Over the connection cap, wait here: the kernel backlog holds new clients.
        let permit = tokio::select! {
            p = Arc::clone(connections).acquire_owned() => p.ok()?,
            _ = shutdown.changed() => return None,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return None,
        };
        match accepted {
            Ok((stream, addr)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                return Some((stream, addr, permit));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Serves a client connection on the fast HTTP/1.1 path, handing it to the general
/// path when a request needs it.
async fn serve_proxied<I>(io: I, peer: Peer, shared: &Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.metrics.connection_opened();
    let ended = h1::serve(io, peer, &shared.forwarder, shared.shutdown.clone()).await;
    shared.metrics.connection_closed();
    if let h1::Ended::Handoff(io) = ended {
        serve_general(TokioIo::new(io), peer, shared).await;
    }
}

/// Serves a client connection with hyper (HTTP/1.1, HTTP/2, h2c, Upgrade).
async fn serve_general<I>(io: TokioIo<I>, peer: Peer, shared: &Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.metrics.connection_opened();
    let forwarder = Arc::clone(&shared.forwarder);
    let activity = Activity::new();
    let tracker = activity.clone();
    let service = move |req: Request<Incoming>| {
        let forwarder = Arc::clone(&forwarder);
        tracker.track(async move { Ok::<_, Infallible>(forwarder.handle(req, peer).await) })
    };
    let idle = (activity, shared.handshake_timeout);
    serve_connection(io, service, &shared.builder, idle, shared.shutdown.clone()).await;
    shared.metrics.connection_closed();
}

/// How long a connection closed for idleness may take to say goodbye (an HTTP/2
/// GOAWAY) before it is dropped.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Runs one connection; on shutdown, lets in-flight requests finish and closes it. With
/// nothing in flight for `idle.1` (from the start: before its first request) it is
/// closed too.
async fn serve_connection<I, S, F>(
    io: TokioIo<I>,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    (activity, idle): (Activity, Duration),
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(io, service_fn(service));
    tokio::pin!(conn);
    let mut in_flight = activity.subscribe();
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    let mut quiet = true;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            Ok(()) = in_flight.changed() => {
                quiet = *in_flight.borrow_and_update() == 0;
                if quiet {
                    deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                }
            }
            () = deadline.as_mut(), if quiet => {
                conn.as_mut().graceful_shutdown();
                break tokio::time::timeout(IDLE_GRACE, conn.as_mut()).await.unwrap_or(Ok(()));
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// What the admin accept loop needs.
pub(crate) struct AdminServer {
    pub(crate) listener: TcpListener,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) admin: Arc<Admin>,
    /// The admin API, or only its health and metrics routes (`health_listen`).
    pub(crate) scope: Scope,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    /// The admin listener's own cap (`admin.max_connections`): idle admin clients
    /// cannot take the data plane's file descriptors.
    pub(crate) connections: Arc<Semaphore>,
    /// For the TLS handshake, the first request head and idleness, as on the data plane.
    pub(crate) timeout: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Serves the admin API until shutdown.
pub(crate) async fn serve_admin(server: AdminServer) {
    let AdminServer {
        listener,
        tls,
        admin,
        scope,
        builder,
        connections,
        timeout,
        mut shutdown,
    } = server;
    while let Some((stream, addr, permit)) = accept(&listener, &connections, &mut shutdown).await {
        let admin = Arc::clone(&admin);
        let builder = Arc::clone(&builder);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Activity::new();
            let tracker = activity.clone();
            let service = move |req: Request<Incoming>| {
                let admin = Arc::clone(&admin);
                tracker.track(async move { Ok::<_, Infallible>(admin.handle(req, scope).await) })
            };
            let idle = (activity, timeout);
            let Some(acceptor) = tls else {
                serve_connection(TokioIo::new(stream), service, &builder, idle, shutdown).await;
                return;
            };
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    serve_connection(TokioIo::new(tls), service, &builder, idle, shutdown).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(client = %addr, error = %e, "admin TLS handshake failed");
                }
                Err(_) => tracing::warn!(client = %addr, "admin TLS handshake timed out"),
            }
        });
    }
}
