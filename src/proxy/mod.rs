//! The built-in L7 proxy (data plane): `podgate proxy -c proxy.yaml`.
//!
//! Owns: serving client traffic (HTTP/1.1, h2, h2c, TLS with SNI, WebSocket) to the
//! upstreams that the admin API installed. The admin API is the LB contract
//! (`docs/lb-contract.openapi.yaml`); the proxy holds no Kubernetes client and must never
//! decide what to route on its own.
//!
//! Data flow: `admin` → `state` (one writer, one `ArcSwap` of whole snapshots: compiled
//! `router`, per-upstream `balancer` pools, `tls` certificates) ← `forward` (one load
//! per request) ← `h1` (the fast HTTP/1.1 path) or hyper ← `server` (listeners).

mod access_log;
mod admin;
mod balancer;
mod body;
mod config;
mod forward;
mod h1;
mod headers;
mod idle;
mod metrics;
mod owners;
mod path;
mod persist;
mod record;
mod router;
mod server;
mod state;
mod timed_connect;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use access_log::{AccessLogConfig, AccessLogError};
pub use admin::ADMIN_ROUTES;
pub use config::{
    AdminConfig, AdminTls, ConfigError, Limits, OutlierConfig, ProxyConfig, Timeouts, Token,
};
pub use router::Router;
pub use tls::TlsError;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{field}: cannot listen on {addr}: {source}")]
    Bind {
        field: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    AccessLog(#[from] access_log::AccessLogError),
}

/// A running proxy. Dropping it stops accepting and closes connections gracefully.
#[derive(Debug)]
pub struct ProxyHandle {
    /// Where plain HTTP (HTTP/1.1 and h2c) is served.
    pub http_addr: SocketAddr,
    /// Where HTTPS is served, if `tls_listen` was configured.
    pub https_addr: Option<SocketAddr>,
    /// Where the admin API is served.
    pub admin_addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served without the token, if
    /// `health_listen` was configured.
    pub health_addr: Option<SocketAddr>,
    admin_tls: bool,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// `http://{admin_addr}` (`https://` with `admin.tls`), the admin API's base URL.
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin_addr)
    }

    /// Stops accepting, lets in-flight requests finish on open connections, and waits
    /// until the accept loops have ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds `addr` (port 0 allowed) and returns the listener with the address it got.
async fn bind(
    field: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let failed = |source| ProxyError::Bind {
        field,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}

/// [`bind`] for an optional listener.
async fn bind_if(
    field: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, ProxyError> {
    match addr {
        Some(addr) => bind(field, addr).await.map(Some),
        None => Ok(None),
    }
}

/// Binds every listener (port 0 allowed), spawns the proxy on the current runtime and
/// returns its addresses. Must be called inside a tokio runtime.
pub async fn start(config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    config.validate()?;
    let token = config.admin.token.clone().ok_or(ConfigError::Invalid {
        field: "admin.token_file",
        reason: "is required".into(),
    })?;
    let admin_tls = config
        .admin
        .tls
        .as_ref()
        .map(|t| tls::admin_server_config(t).map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    let store = Arc::new(state::Store::new());
    let metrics = Arc::new(metrics::Metrics::new(config.limits.metrics_upstreams));
    let (shutdown, shutdown_rx) = watch::channel(false);
    if let Some(path) = &config.state_file {
        restore(&store, &metrics, path);
    }

    let (http, http_addr) = bind("listen", config.listen).await?;
    let (admin_listener, admin_addr) = bind("admin.listen", config.admin.listen).await?;
    let health = bind_if("health_listen", config.health_listen).await?;
    let tls = match bind_if("tls_listen", config.tls_listen).await? {
        Some((l, local_addr)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(
                Arc::clone(&store),
                config.tls_default_certificate.clone(),
            )?);
            Some((l, local_addr, acceptor))
        }
        None => None,
    };

    let builder = Arc::new(server::builder(&config));
    let shared = shared(&config, &store, &metrics, &builder, &shutdown_rx)?;
    let admin = Arc::new(admin::Admin::new(
        Arc::clone(&store),
        Arc::clone(&metrics),
        token,
        config.limits.max_admin_body_bytes,
    ));

    let admin_server = |listener, tls, scope| server::AdminServer {
        listener,
        tls,
        admin: Arc::clone(&admin),
        scope,
        builder: Arc::clone(&builder),
        connections: Arc::new(Semaphore::new(config.admin.max_connections)),
        timeout: config.timeouts.header_read(),
        shutdown: shutdown_rx.clone(),
    };
    let mut tasks = vec![
        tokio::spawn(server::serve_plain(http, shared.clone())),
        tokio::spawn(server::serve_admin(admin_server(
            admin_listener,
            admin_tls.clone(),
            admin::Scope::Admin,
        ))),
    ];
    let health_addr = health.map(|(listener, addr)| {
        tasks.push(tokio::spawn(server::serve_admin(admin_server(
            listener,
            None,
            admin::Scope::Health,
        ))));
        addr
    });
    if let Some(path) = &config.state_file {
        tasks.push(persist::spawn_writer(
            Arc::clone(&store),
            Arc::clone(&metrics),
            path.clone(),
            std::time::Duration::from_millis(config.state_file_interval_ms),
            shutdown.subscribe(),
        ));
    }
    let bound_tls = tls.map(|(l, addr, acceptor)| {
        tasks.push(tokio::spawn(server::serve_tls(l, acceptor, shared)));
        addr
    });
    tracing::info!(%http_addr, https_addr = ?bound_tls, %admin_addr, health_addr = ?health_addr, "proxy listening");
    Ok(ProxyHandle {
        http_addr,
        https_addr: bound_tls,
        admin_addr,
        health_addr,
        admin_tls: admin_tls.is_some(),
        shutdown,
        tasks,
    })
}

/// What every data-plane connection shares: the forwarder (with the access log), the
/// connection cap, timeouts.
fn shared(
    config: &ProxyConfig,
    store: &Arc<state::Store>,
    metrics: &Arc<metrics::Metrics>,
    builder: &Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<server::Shared, ProxyError> {
    let log = access_log::AccessLog::start(&config.access_log, Arc::clone(metrics))?;
    Ok(server::Shared {
        forwarder: Arc::new(forward::Forwarder::new(
            Arc::clone(store),
            Arc::clone(metrics),
            Arc::new(log),
            config.clone(),
        )),
        metrics: Arc::clone(metrics),
        builder: Arc::clone(builder),
        connections: Arc::new(Semaphore::new(config.limits.max_connections)),
        handshake_timeout: config.timeouts.header_read(),
        shutdown: shutdown.clone(),
    })
}

/// Restores the state file into the fresh `store`, or says why not (the proxy then
/// starts empty and not ready: a controller's full sync fills it).
fn restore(store: &state::Store, metrics: &metrics::Metrics, path: &std::path::Path) {
    match persist::restore(store, path) {
        Ok(true) => {
            let live = store.load();
            metrics.live_state(&live);
            tracing::info!(
                path = %path.display(),
                generation = live.generation,
                upstreams = live.upstreams.len(),
                endpoints = live.endpoints,
                complete = live.complete,
                "state restored from the state file"
            );
        }
        Ok(false) => {
            tracing::info!(path = %path.display(), "no state file yet: starting empty");
        }
        Err(e) => tracing::error!(error = %e, "state file ignored: starting empty"),
    }
}
