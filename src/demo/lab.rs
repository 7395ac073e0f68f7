//! A whole podgate installation on one machine: two simulated clusters (`idc`, `tke`),
//! the built-in proxy and a controller wired to them through real kubeconfig files and
//! the real LB contract. `podgate demo` runs one; the end-to-end tests run many.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::controller::config::{AdminConfig, ClusterConfig, ControllerConfig, WeightsConfig};
use crate::controller::{self, Controller, RunOptions};
use crate::lb::config::{Target, TargetKind};
use crate::proxy::{self, ProxyConfig, ProxyHandle};
use crate::sync::SyncConfig;
use podgate_sim::{SimCluster, SimOptions};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("simulated API server: {0}")]
    Sim(#[from] podgate_sim::SimError),
    #[error("proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error("controller: {0}")]
    Controller(#[from] crate::controller::ControllerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A step of the demo the controller refused.
    #[error("{0}")]
    Demo(String),
}

/// The clusters every lab has, in configuration order.
pub const CLUSTERS: [&str; 2] = ["idc", "tke"];

pub struct Lab {
    pub(crate) sims: Vec<SimCluster>,
    pub proxy: ProxyHandle,
    pub controller: Controller,
    pub config: ControllerConfig,
    /// Kubeconfig and token files.
    pub dir: podgate_sim::TempDir,
    http: reqwest::Client,
}

/// Where the lab's proxy listens (port 0 picks one), and the controller settings tests
/// shorten. The failover settings default to those of `podgate.yaml`.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub listen: SocketAddr,
    /// The proxy's admin API (the LB contract).
    pub proxy_admin: SocketAddr,
    /// The controller's admin view.
    pub controller_admin: SocketAddr,
    pub sync: SyncConfig,
    /// `hold_down` of the controller configuration.
    pub hold_down: Duration,
    /// `withdraw_guard` of the controller configuration.
    pub withdraw_guard: f64,
    /// `confirm_after` of the controller configuration.
    pub confirm_after: Duration,
    /// `stale_ttl` of every cluster.
    pub stale_ttl: Option<Duration>,
    /// Runs before the controller starts: edits its configuration (e.g. per-cluster
    /// settings) and may prepare the simulated clusters (e.g. register custom kinds).
    pub configure: Option<Configure>,
    /// More LBs for the controller to keep in sync besides the built-in proxy (e.g.
    /// real HAProxy or Caddy instances the caller started), appended to its targets.
    pub extra_targets: Vec<Target>,
    /// The proxy's HTTPS listener (`tls_listen`), if any.
    pub tls_listen: Option<SocketAddr>,
}

/// See [`LabOptions::configure`].
pub type ConfigureFn = dyn Fn(&mut ControllerConfig, &[SimCluster]) + Send + Sync;

/// A shareable [`ConfigureFn`].
#[derive(Clone)]
pub struct Configure(pub std::sync::Arc<ConfigureFn>);

impl Configure {
    pub fn new(f: impl Fn(&mut ControllerConfig, &[SimCluster]) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for Configure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Configure(..)")
    }
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy_admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            controller_admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            sync: SyncConfig::default(),
            hold_down: Duration::from_secs(10),
            withdraw_guard: 0.5,
            confirm_after: Duration::from_secs(30),
            stale_ttl: None,
            configure: None,
            extra_targets: Vec::new(),
            tls_listen: None,
        }
    }
}

impl Lab {
    pub async fn start(options: LabOptions) -> Result<Self, LabError> {
        let dir = podgate_sim::scratch_dir()?;
        let mut sims = Vec::new();
        let mut clusters = Vec::new();
        for name in CLUSTERS {
            // The simulated pods live on 127.1.x.y: the sim must accept loopback
            // endpoint addresses, which a real API server refuses.
            let sim = SimCluster::start(
                name,
                SimOptions {
                    allow_loopback_endpoints: true,
                    ..SimOptions::default()
                },
            )
            .await?;
            let kubeconfig = dir.path().join(format!("{name}.kubeconfig"));
            sim.write_kubeconfig(&kubeconfig)?;
            // Where the controller keeps its run-time weights (`weights` in the config).
            sim.apply_json(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": WeightsConfig::default().namespace},
            }))?;
            clusters.push(ClusterConfig {
                name: name.to_owned(),
                kubeconfig: Some(kubeconfig),
                context: None,
                weight: 100,
                stale_ttl: options.stale_ttl,
                routable_cidrs: None,
                routable_from: None,
                target: podgate_core::index::EndpointTarget::Pod,
            });
            sims.push(sim);
        }
        let token = format!("{:032x}", rand::random::<u128>());
        let token_file: PathBuf = dir.path().join("lb.token");
        std::fs::write(&token_file, &token)?;
        let mut proxy_config = ProxyConfig::new(options.listen, options.proxy_admin, &token);
        proxy_config.tls_listen = options.tls_listen;
        let proxy = proxy::start(proxy_config).await?;
        let mut config = ControllerConfig {
            log_format: crate::logging::LogFormat::Text,
            controller_name: "podgate.io/ingress-controller".to_owned(),
            ingress_class: "podgate".to_owned(),
            gateway_controller_name: podgate_core::gateway::DEFAULT_CONTROLLER_NAME.to_owned(),
            publish_addresses: vec![proxy.http_addr.ip().to_string()],
            clusters,
            targets: std::iter::once(Target {
                url: Some(proxy.admin_url()),
                token_file: Some(token_file),
                ..Target::new("proxy", TargetKind::Podgate)
            })
            .chain(options.extra_targets)
            .collect(),
            admin: AdminConfig {
                listen: options.controller_admin,
                ..AdminConfig::default()
            },
            health_listen: None,
            hold_down: options.hold_down,
            withdraw_guard: options.withdraw_guard,
            confirm_after: options.confirm_after,
            weights: WeightsConfig::default(),
            initial_sync_timeout: Duration::from_secs(30),
            lb_owner: None,
            leader_election: None,
            readiness_gate: crate::controller::config::ReadinessGateConfig::default(),
        };
        if let Some(configure) = &options.configure {
            (configure.0)(&mut config, &sims);
        }
        let controller = controller::start(
            &config,
            RunOptions {
                sync: options.sync,
                events: true,
            },
        )
        .await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            sims,
            proxy,
            controller,
            config,
            dir,
            http,
        })
    }

    /// Stops the proxy and starts a new one on the same addresses: an LB that restarted
    /// empty. The controller notices (new instance id) and pushes everything again.
    pub async fn restart_proxy(self) -> Result<Self, LabError> {
        let Self {
            sims,
            proxy,
            controller,
            config,
            dir,
            http,
        } = self;
        let (listen, admin) = (proxy.http_addr, proxy.admin_addr);
        proxy.shutdown().await;
        let token = std::fs::read_to_string(dir.path().join("lb.token"))?;
        let proxy = proxy::start(ProxyConfig::new(listen, admin, &token)).await?;
        Ok(Self {
            sims,
            proxy,
            controller,
            config,
            dir,
            http,
        })
    }

    /// The simulated API server of `cluster`.
    pub fn sim(&self, cluster: &str) -> &SimCluster {
        let i = CLUSTERS.iter().position(|c| *c == cluster).unwrap_or(0);
        &self.sims[i]
    }

    /// Creates or replaces `obj` in `cluster`, as `kubectl apply` would.
    pub fn apply<T: Serialize>(&self, cluster: &str, obj: &T) -> Result<(), LabError> {
        self.sim(cluster).apply(obj)?;
        Ok(())
    }

    /// One request through the proxy: `(status, body)`.
    pub async fn get(&self, host: &str, path: &str) -> Result<(u16, String), LabError> {
        let url = format!("http://{}{path}", self.proxy.http_addr);
        let response = self
            .http
            .get(url)
            .header(http::header::HOST, host)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// The controller's admin view.
    pub async fn admin_state(&self) -> Result<serde_json::Value, LabError> {
        self.admin_json("/v1/state").await
    }

    /// `GET path` of the controller's admin view, as JSON.
    pub async fn admin_json(&self, path: &str) -> Result<serde_json::Value, LabError> {
        let url = format!("http://{}{path}", self.controller.admin_addr);
        Ok(self.http.get(url).send().await?.json().await?)
    }

    /// What the proxy holds (`GET /v1/state` of its admin API), as the LB sees it.
    pub async fn proxy_state(&self) -> Result<serde_json::Value, LabError> {
        self.proxy_json("/v1/state").await
    }

    /// `GET path` of the proxy's admin API (with its token), as JSON.
    pub async fn proxy_json(&self, path: &str) -> Result<serde_json::Value, LabError> {
        Ok(self.proxy_get(path).await?.json().await?)
    }

    /// The proxy's `/metrics`.
    pub async fn proxy_metrics(&self) -> Result<String, LabError> {
        Ok(self.proxy_get("/metrics").await?.text().await?)
    }

    /// The controller's `/metrics`.
    pub async fn controller_metrics(&self) -> Result<String, LabError> {
        let url = format!("http://{}/metrics", self.controller.admin_addr);
        Ok(self.http.get(url).send().await?.text().await?)
    }

    async fn proxy_get(&self, path: &str) -> Result<reqwest::Response, LabError> {
        let token = std::fs::read_to_string(self.dir.path().join("lb.token"))?;
        let url = format!("{}{path}", self.proxy.admin_url());
        Ok(self.http.get(url).bearer_auth(token.trim()).send().await?)
    }

    /// Polls `check` until it returns `Some`, or fails after `timeout`.
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T, LabError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError::Timeout(what.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deploys one app the way a user would, in every cluster listed: its Namespace,
    /// podgate's (default) IngressClass, the Service `web` (port 80 `http`), an Ingress
    /// routing `host` to it, and an EndpointSlice of that cluster's pods.
    pub fn deploy(
        &self,
        namespace: &str,
        host: &str,
        pods: &[(&str, &[super::pods::Pod])],
    ) -> Result<(), LabError> {
        use podgate_sim::objects::{default_class, ingress, ingress_class, service};
        for (cluster, pods) in pods {
            let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            self.sim(cluster).apply_json(ns)?;
            self.apply(
                cluster,
                &default_class(ingress_class("podgate", &self.config.controller_name)),
            )?;
            self.apply(cluster, &service(namespace, "web").port("http", 80).build())?;
            self.apply(
                cluster,
                &ingress(namespace, "web")
                    .route(host, "Prefix", "/", "web", 80)
                    .build(),
            )?;
            let slice =
                super::pods::slice_of(namespace, &format!("web-{cluster}"), "web", pods, &[]);
            self.apply(cluster, &slice)?;
        }
        Ok(())
    }

    /// Starts `per_cluster` pods in each cluster (idc on 127.1.`subnet`.x, tke on
    /// 127.1.`subnet`+1.x), deploys the app with them ([`Lab::deploy`]) and waits until
    /// every pod has answered through the proxy.
    pub async fn deploy_pods(
        &self,
        namespace: &str,
        host: &str,
        subnet: u8,
        per_cluster: u8,
    ) -> Result<(Vec<super::pods::Pod>, Vec<super::pods::Pod>), LabError> {
        use super::pods;
        let port = pods::free_port().await?;
        let idc = pods::start_many("idc", "web", subnet, 1, per_cluster, port).await?;
        let tke = pods::start_many("tke", "web", subnet + 1, 1, per_cluster, port).await?;
        self.deploy(namespace, host, &[("idc", &idc), ("tke", &tke)])?;
        let want = usize::from(per_cluster) * 2;
        self.eventually("every pod serving", Duration::from_secs(20), || async {
            let s = self.split(host, 10 * want).await.ok()?;
            (s.by_pod.len() == want).then_some(())
        })
        .await?;
        Ok((idc, tke))
    }

    /// Sends `n` requests and counts answers by their first word (the pod's cluster)
    /// and failures (anything but 200).
    pub async fn split(&self, host: &str, n: usize) -> Result<Split, LabError> {
        let mut split = Split::default();
        for _ in 0..n {
            match self.get(host, "/").await {
                Ok((200, body)) => {
                    let mut words = body.split_whitespace();
                    let cluster = words.next().unwrap_or("").to_owned();
                    let pod = words.next().unwrap_or("").to_owned();
                    *split.by_cluster.entry(cluster.clone()).or_default() += 1;
                    *split.by_pod.entry(format!("{cluster}/{pod}")).or_default() += 1;
                }
                _ => split.failed += 1,
            }
        }
        Ok(split)
    }
}

/// Where requests went.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub by_cluster: std::collections::BTreeMap<String, usize>,
    pub by_pod: std::collections::BTreeMap<String, usize>,
    pub failed: usize,
}

impl Split {
    pub fn cluster(&self, name: &str) -> usize {
        self.by_cluster.get(name).copied().unwrap_or(0)
    }
}
