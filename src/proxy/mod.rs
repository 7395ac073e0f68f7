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
pub mod handover;
mod headers;
mod health;
mod idle;
mod metrics;
mod owners;
mod path;
mod persist;
mod record;
mod router;
mod rules;
mod server;
mod state;
mod timed_connect;
pub(crate) mod tls;

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
    /// The listening sockets by name, kept to hand over to a successor.
    sockets: Vec<(&'static str, std::net::TcpListener)>,
    /// Connection slots of every listener and how many there are: all back means every
    /// connection has closed.
    slots: Vec<(Arc<Semaphore>, u32)>,
    shutdown_timeout: std::time::Duration,
    store: Arc<state::Store>,
    state_file: Option<std::path::PathBuf>,
    /// Cleared after a handover: the state file is the successor's.
    state_writes: Arc<std::sync::atomic::AtomicBool>,
}

impl ProxyHandle {
    /// `http://{admin_addr}` (`https://` with `admin.tls`), the admin API's base URL.
    pub fn admin_url(&self) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.admin_addr)
    }

    /// Stops accepting, lets in-flight requests finish (idle keep-alive connections
    /// close at once, busy ones after their answer), and waits until every connection
    /// has closed, at most `timeouts.shutdown_ms`.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        // Nothing accepts any more: close the sockets (a successor holds its own), so
        // that new clients are refused now rather than queued and reset at exit.
        self.sockets.clear();
        let all_closed = async {
            for (slots, n) in &self.slots {
                let _ = slots.acquire_many(*n).await;
            }
        };
        if tokio::time::timeout(self.shutdown_timeout, all_closed)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?self.shutdown_timeout, "connections still open at the shutdown timeout: closing them");
        }
    }

    /// A successor took over: from now on it alone writes the state file (this process
    /// would replace its newer state with an older one).
    pub fn stop_state_writes(&self) {
        self.state_writes
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The handover failed: this process writes the state file again.
    pub fn resume_state_writes(&self) {
        self.state_writes
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the state file now (if there is one), so that a successor starts from
    /// everything this proxy holds.
    pub async fn save_state(&self) -> std::io::Result<()> {
        match &self.state_file {
            Some(path) => persist::save(Arc::clone(&self.store), path.clone(), None).await,
            None => Ok(()),
        }
    }

    /// Duplicates of the listening sockets, by name, for a successor process
    /// ([`handover::start_successor`]). These stay open here until the proxy stops.
    pub fn sockets(&self) -> std::io::Result<Vec<(&'static str, std::os::fd::OwnedFd)>> {
        self.sockets
            .iter()
            .map(|(name, l)| Ok((*name, l.try_clone()?.into())))
            .collect()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A listening socket on `addr` with a backlog of 1024 (tokio's; std's `bind` asks for
/// 128), which holds the connections that arrive while a successor takes over.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Where the listeners come from: inherited sockets first (a predecessor's, or
/// systemd's), else bound here; each kept under its name for a successor.
struct Binder<'a> {
    inherited: &'a mut handover::Inherited,
    sockets: Vec<(&'static str, std::net::TcpListener)>,
}

impl Binder<'_> {
    /// The listener `name` for `addr` (port 0 allowed), with the address it got.
    fn bind(
        &mut self,
        name: &'static str,
        field: &'static str,
        addr: SocketAddr,
    ) -> Result<(TcpListener, SocketAddr), ProxyError> {
        let failed = |source| ProxyError::Bind {
            field,
            addr,
            source,
        };
        let listener = match self.inherited.take(name, addr) {
            Some(l) => l,
            None => listen(addr).map_err(failed)?,
        };
        listener.set_nonblocking(true).map_err(failed)?;
        let local = listener.local_addr().map_err(failed)?;
        self.sockets
            .push((name, listener.try_clone().map_err(failed)?));
        Ok((TcpListener::from_std(listener).map_err(failed)?, local))
    }

    /// [`Binder::bind`] for an optional listener.
    fn bind_if(
        &mut self,
        name: &'static str,
        field: &'static str,
        addr: Option<SocketAddr>,
    ) -> Result<Option<(TcpListener, SocketAddr)>, ProxyError> {
        addr.map(|addr| self.bind(name, field, addr)).transpose()
    }
}

/// Binds every listener (port 0 allowed), spawns the proxy on the current runtime and
/// returns its addresses. Must be called inside a tokio runtime.
#[allow(clippy::unused_async)] // async: it spawns, so it must run inside a runtime
pub async fn start(config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    start_with(config, &mut handover::Inherited::default()).await
}

/// The admin API's token and TLS settings, checked.
fn admin_settings(
    config: &ProxyConfig,
) -> Result<(Token, Option<tokio_rustls::TlsAcceptor>), ProxyError> {
    let token = config.admin.token.clone().ok_or(ConfigError::Invalid {
        field: "admin.token_file",
        reason: "is required".into(),
    })?;
    let tls = config
        .admin
        .tls
        .as_ref()
        .map(|t| tls::admin_server_config(t).map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    Ok((token, tls))
}

/// [`start`], listening on the `inherited` sockets where they fit the configuration.
#[allow(clippy::unused_async)] // async: it spawns, so it must run inside a runtime
pub async fn start_with(
    config: ProxyConfig,
    inherited: &mut handover::Inherited,
) -> Result<ProxyHandle, ProxyError> {
    config.validate()?;
    let (token, admin_tls) = admin_settings(&config)?;
    let store = Arc::new(state::Store::new());
    let metrics = Arc::new(metrics::Metrics::new(config.limits.metrics_upstreams));
    let (shutdown, shutdown_rx) = watch::channel(false);
    if let Some(path) = &config.state_file {
        restore(&store, &metrics, path);
    }

    let mut binder = Binder {
        inherited,
        sockets: Vec::new(),
    };
    let (http, http_addr) = binder.bind("http", "listen", config.listen)?;
    let (admin_listener, admin_addr) = binder.bind("admin", "admin.listen", config.admin.listen)?;
    let health = binder.bind_if("health", "health_listen", config.health_listen)?;
    let tls = match binder.bind_if("tls", "tls_listen", config.tls_listen)? {
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

    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let cap = count(config.limits.max_connections);
    let (conns, tunnels) = (&shared.connections, &shared.forwarder.tunnels);
    let mut slots = vec![(Arc::clone(conns), cap), (Arc::clone(tunnels), cap)];
    let admin_slots = count(config.admin.max_connections);
    let mut admin_server = |listener, tls, scope| {
        let connections = Arc::new(Semaphore::new(config.admin.max_connections));
        slots.push((Arc::clone(&connections), admin_slots));
        server::AdminServer {
            listener,
            tls,
            admin: Arc::clone(&admin),
            scope,
            builder: Arc::clone(&builder),
            connections,
            timeout: config.timeouts.header_read(),
            shutdown: shutdown_rx.clone(),
        }
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
    let state_writes = Arc::new(std::sync::atomic::AtomicBool::new(true));
    tasks.extend(background(
        &config,
        &store,
        &metrics,
        &shutdown,
        &state_writes,
    ));
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
        sockets: binder.sockets,
        slots,
        shutdown_timeout: config.timeouts.shutdown(),
        store,
        state_file: config.state_file.clone(),
        state_writes,
    })
}

/// The tasks beside the listeners: active health checks and the state-file writer.
fn background(
    config: &ProxyConfig,
    store: &Arc<state::Store>,
    metrics: &Arc<metrics::Metrics>,
    shutdown: &watch::Sender<bool>,
    state_writes: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![health::spawn(
        Arc::clone(store),
        Arc::clone(metrics),
        shutdown.subscribe(),
    )];
    if let Some(path) = &config.state_file {
        tasks.push(persist::spawn_writer(
            Arc::clone(store),
            Arc::clone(metrics),
            path.clone(),
            std::time::Duration::from_millis(config.state_file_interval_ms),
            Arc::clone(state_writes),
            shutdown.subscribe(),
        ));
    }
    tasks
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
