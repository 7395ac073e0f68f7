//! Simulated pods: tiny HTTP servers, each on its own loopback address (127.1.x.y), the
//! way a real pod has its own IP. They answer with their cluster and name, so traffic
//! splits can be counted. Used by `podgate demo` and the end-to-end tests.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running simulated pod. Dropping it stops it (connections are refused after).
pub struct Pod {
    pub cluster: String,
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Pod {
    /// Starts a pod on `ip:port` (`port` 0 picks one). It answers every request with
    /// `"{cluster} {name}\n"`.
    pub async fn start(cluster: &str, name: &str, ip: IpAddr, port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let body = Bytes::from(format!("{cluster} {name}\n"));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            // The connections are the pod's: when it dies (drop), they die with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let (body, counter) = (body.clone(), counter.clone());
                connections.spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let response = Response::new(Full::new(body.clone()));
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            cluster: cluster.to_owned(),
            name: name.to_owned(),
            addr,
            hits,
            task,
        })
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `count` pods of one cluster on consecutive addresses `127.1.{subnet}.{1..}`,
/// all on the same port, like the pods behind one EndpointSlice port.
pub async fn start_many(
    cluster: &str,
    app: &str,
    subnet: u8,
    first: u8,
    count: u8,
    port: u16,
) -> std::io::Result<Vec<Pod>> {
    let mut pods = Vec::new();
    for i in first..first + count {
        let ip = IpAddr::from([127, 1, subnet, i]);
        pods.push(Pod::start(cluster, &format!("{app}-{i}"), ip, port).await?);
    }
    Ok(pods)
}

/// A port free on every 127.1.x.y address we use: bind one, keep its number. Pods of
/// one app share it, as the pods behind one Service port do.
pub async fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((IpAddr::from([127, 1, 0, 1]), 0)).await?;
    Ok(l.local_addr()?.port())
}

/// The EndpointSlice `name` of `service` listing `pods` (each on its own IP, all on the
/// first pod's port): ready, except those named in `draining` (terminating).
pub fn slice_of(
    namespace: &str,
    name: &str,
    service: &str,
    pods: &[Pod],
    draining: &[&str],
) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let port = pods.first().map_or(8080, |p| p.addr.port());
    let mut s = podgate_sim::objects::slice(namespace, name, service).port("http", port);
    for p in pods {
        s = if draining.contains(&p.name.as_str()) {
            s.terminating(&p.ip())
        } else {
            s.ready(&p.ip())
        };
    }
    s.build()
}
