//! Shared pieces of the LB adapter tests: "pod" backends on their own loopback IPs,
//! an HTTP client that sends one request per connection, builders for batches, and a
//! deadline-bounded wait. Everything stays on 127.0.0.0/8.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use podgate_core::model::{
    Batch, ClusterName, Endpoint, EndpointState, HostPattern, PathMatch, PortRef, Route,
    RouteTable, Upstream, UpstreamKey, VirtualHost,
};
use tokio::net::{TcpListener, TcpStream};

/// Where an LB program is: `$PATH`, then the sbin folders Debian puts daemons in (a
/// non-login root shell may lack them).
pub(crate) fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether an LB program is installed. Missing: loud skip locally, failure under CI.
pub(crate) fn require_program(program: &str) -> bool {
    if find_program(program).is_some() {
        return true;
    }
    let msg = format!(
        "\n!!!!!!!! `{program}` is not installed: this test is SKIPPED. \
         Install it with `apt-get install -y {program}`. !!!!!!!!\n"
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{msg}(CI=true: missing programs are a failure)"
    );
    // Straight to the process's stderr: the test harness would swallow `eprintln!`.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    false
}

/// An address for an LB program to listen on: a random IP of 127.2.0.0/16 and a port
/// that was free on it. The port is released before the program binds it; on an IP of
/// its own, another test could take it only by binding the same random IP (or a
/// wildcard address), which none does — unlike a port released on 127.0.0.1, where
/// every test's ephemeral sockets live.
pub(crate) fn free_addr() -> SocketAddr {
    let ip = std::net::Ipv4Addr::new(127, 2, rand::random(), rand::random::<u8>().max(1));
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback address")
}

/// How long a pod takes to answer a request for `/slow…`.
pub(crate) const SLOW_REQUEST: Duration = Duration::from_millis(1500);

/// A tiny HTTP server standing in for a pod: answers every request with its name and
/// counts what it served.
pub(crate) struct Pod {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) served: Arc<AtomicUsize>,
    /// What `/healthz` answers: 200 while true, 503 after.
    pub(crate) healthy: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pod {
    pub(crate) async fn start(name: &str, ip: &str) -> Self {
        let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .expect("bind a pod on its loopback IP");
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (n, s, h) = (name.to_owned(), served.clone(), healthy.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, s, h) = (n.clone(), s.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        // Health checks are the LB's, not traffic: not counted.
                        if req.uri().path() == "/healthz" {
                            let status = if h.load(Ordering::SeqCst) { 200 } else { 503 };
                            let mut answer = hyper::Response::new(Full::new(Bytes::from("health")));
                            *answer.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            return futures::future::Either::Left(std::future::ready(Ok::<
                                _,
                                Infallible,
                            >(
                                answer
                            )));
                        }
                        s.fetch_add(1, Ordering::SeqCst);
                        let body = Full::new(Bytes::from(n.clone()));
                        // `/slow…` stands for a long request still in flight.
                        let slow = req.uri().path().starts_with("/slow");
                        futures::future::Either::Right(async move {
                            if slow {
                                tokio::time::sleep(SLOW_REQUEST).await;
                            }
                            Ok::<_, Infallible>(hyper::Response::new(body))
                        })
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            served,
            healthy,
            task,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub(crate) fn endpoint(&self, cluster: &str, state: EndpointState, weight: u32) -> Endpoint {
        Endpoint {
            cluster: ClusterName::new(cluster),
            address: self.addr.ip(),
            port: self.addr.port(),
            zone: None,
            node: None,
            state,
            weight,
        }
    }

    pub(crate) fn active(&self, weight: u32) -> Endpoint {
        self.endpoint("idc", EndpointState::Active, weight)
    }

    pub(crate) fn draining(&self) -> Endpoint {
        self.endpoint("idc", EndpointState::Draining, 0)
    }
}

/// One GET through the LB on a fresh connection: (status, body). `Err` when the LB
/// could not be reached.
pub(crate) async fn get(lb: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let fut = async {
        let stream = TcpStream::connect(lb).await.map_err(|e| e.to_string())?;
        get_over(stream, host, path).await
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "request timed out".to_owned())?
}

/// One `GET path` with `Host: host` and `Connection: close` over an open connection.
async fn get_over<S>(io: S, host: &str, path: &str) -> Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", host)
        .header("connection", "close")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a request that must succeed, or a description of what came instead.
pub(crate) async fn who(lb: SocketAddr, host: &str, path: &str) -> String {
    match get(lb, host, path).await {
        Ok((200, body)) => body,
        Ok((status, body)) => format!("HTTP {status} {body}"),
        Err(e) => format!("error: {e}"),
    }
}

/// How many of `n` requests each pod answered.
pub(crate) async fn spread(
    lb: SocketAddr,
    host: &str,
    path: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        *out.entry(who(lb, host, path).await).or_insert(0) += 1;
    }
    out
}

/// Polls `check` until it returns `Ok`, or fails the test with its last error.
pub(crate) async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not true within {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

pub(crate) fn key(svc: &str) -> UpstreamKey {
    UpstreamKey::new("default", svc, PortRef::Number(80))
}

pub(crate) fn upstream(svc: &str, endpoints: Vec<Endpoint>) -> Upstream {
    let mut endpoints = endpoints;
    endpoints.sort_by(|a, b| (&a.cluster, a.address, a.port).cmp(&(&b.cluster, b.address, b.port)));
    Upstream {
        health_check: None,
        key: key(svc),
        shares: vec![(ClusterName::new("idc"), 1000)],
        endpoints,
    }
}

/// `host("a.example.com", &[(PathMatch::prefix("/"), "web")], None)`.
pub(crate) fn vhost(routes: &[(PathMatch, &str)], default: Option<&str>) -> VirtualHost {
    let mut routes: Vec<Route> = routes
        .iter()
        .map(|(p, svc)| Route {
            path: p.clone(),
            upstream: key(svc),
        })
        .collect();
    routes.sort_by(|a, b| a.path.cmp(&b.path));
    VirtualHost {
        routes,
        default_backend: default.map(key),
        tls: None,
        rules: Vec::new(),
    }
}

/// One upstream per pod (named after it, the pod active) and `routes`.
pub(crate) fn batch_of(pods: &[Pod], routes: &RouteTable) -> Batch {
    Batch {
        epoch: 1,
        upsert_upstreams: pods
            .iter()
            .map(|p| upstream(&p.name, vec![p.active(1)]))
            .collect(),
        routes: Some(routes.clone()),
        ..Batch::default()
    }
}

pub(crate) fn table(hosts: Vec<(&str, VirtualHost)>, default: Option<&str>) -> RouteTable {
    RouteTable {
        any_host: None,
        hosts: hosts
            .into_iter()
            .map(|(h, v)| (HostPattern::parse(h).unwrap(), v))
            .collect(),
        default_backend: default.map(key),
    }
}

/// Stops a program and everything it started. HAProxy is launched in a process group
/// of its own (`process_group(0)`), killed as a whole, so that no worker of a "dead"
/// HAProxy lingers and keeps answering on its runtime socket.
pub(crate) fn stop_child(child: &mut std::process::Child) {
    let signal = |sig: &str, target: String| {
        let _ = std::process::Command::new("kill")
            .args([sig, "--", &target])
            .stderr(std::process::Stdio::null())
            .status();
    };
    let (pid, group) = (child.id().to_string(), format!("-{}", child.id()));
    signal("-TERM", group.clone());
    signal("-TERM", pid);
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            signal("-KILL", group);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal("-KILL", group);
    let _ = child.kill();
    let _ = child.wait();
}

/// A certificate authority for tests: the only root a TLS client of the tests trusts.
pub(crate) struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate signed by a [`TestCa`], as the contract carries it and as a client
/// sees it.
pub(crate) struct TestCert {
    pub(crate) certificate: podgate_core::model::Certificate,
    pub(crate) der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Self { issuer }
    }

    /// A new certificate (a new key every time) for `name`, with the id `id`.
    pub(crate) fn leaf(&self, id: &str, name: &str) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        TestCert {
            certificate: podgate_core::model::Certificate {
                id: id.to_owned(),
                cert_pem: podgate_core::model::Pem(cert.pem().into()),
                key_pem: podgate_core::model::Pem(key.serialize_pem().into()),
            },
            der: cert.der().clone(),
        }
    }

    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// One GET over TLS with SNI `host` (and `Host: host`), the certificate verified against
/// `ca` only: (the leaf the LB presented, status, body). `Err` for a failed handshake
/// (an unknown name, a certificate `ca` did not sign or not for `host`) or request.
pub(crate) async fn https_get(
    lb: SocketAddr,
    ca: &TestCa,
    host: &str,
    path: &str,
) -> Result<(rustls::pki_types::CertificateDer<'static>, u16, String), String> {
    let fut = async {
        let tcp = TcpStream::connect(lb).await.map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls = ca
            .client()
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no certificate presented")?
            .clone();
        let (status, body) = get_over(tls, host, path).await?;
        Ok((presented, status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "request timed out".to_owned())?
}
