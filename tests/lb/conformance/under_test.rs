//! The LB under test: one of the three kinds started with its adapter, the address its
//! data plane listens on, kill and launch hooks, and what the contract lets each kind do
//! its own way (capabilities). The checks see only this.

use crate::harness::{Pod, free_addr, key, table, upstream, vhost, who};
use crate::programs;

use std::net::SocketAddr;
use std::time::Duration;

use podgate::lb::caddy::{CaddyAdapter, CaddySettings};
use podgate::lb::haproxy::{HaproxyAdapter, HaproxySettings};
use podgate::lb::{HttpLb, HttpLbConfig, LbAdapter};
use podgate_core::model::{Batch, LbState, PathMatch};

/// The three kinds of LB every check runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The built-in proxy in this process, driven only through the LB contract.
    Proxy,
    Haproxy,
    Caddy,
}

impl Kind {
    /// Whether this kind can run here (a missing program: loud skip, or a failure
    /// under `CI=true`).
    pub(crate) fn available(self) -> bool {
        match self {
            Self::Proxy => true,
            Self::Haproxy => crate::harness::require_program("haproxy"),
            Self::Caddy => crate::harness::require_program("caddy"),
        }
    }

    /// `127.1.<subnet>.x` for the pods of check number `check` (< 40): each (kind,
    /// check) has its own, so that logs and server names never mix.
    pub(crate) fn subnet(self, check: u8) -> u8 {
        assert!(check < 40);
        let base = match self {
            Self::Proxy => 100,
            Self::Haproxy => 140,
            Self::Caddy => 180,
        };
        base + check
    }
}

/// How an LB spreads requests over equal endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Balance {
    /// (Weighted) round robin: n requests over k equal endpoints give n/k each.
    RoundRobin,
    /// Random choices (the proxy: cluster share, then power of two choices): only the
    /// proportions hold, within a few standard deviations.
    Random,
}

/// What a restarted LB holds before podgate pushes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterRestart {
    /// Everything (HAProxy: routes from the map files, servers from podgate.cfg, which
    /// the adapter keeps current).
    Everything,
    /// Nothing; `listening`: whether its data plane listens anyway (the proxy's
    /// listener is its own configuration; Caddy's is part of podgate's).
    Nothing { listening: bool },
}

/// Where podgate's foreign neighbours are put into a shared LB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Before podgate's first push.
    BeforePodgate,
    /// Beside what podgate registered.
    BesidePodgate,
}

/// The built-in proxy in this process, reached only through its admin API.
pub(crate) struct Proxy {
    handle: Option<podgate::proxy::ProxyHandle>,
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    token: String,
    adapter: HttpLb,
}

impl Proxy {
    async fn start() -> Self {
        let (http, https, admin) = (free_addr(), free_addr(), free_addr());
        let token = format!("{:032x}", rand::random::<u128>());
        let mut p = Self {
            handle: None,
            http,
            https,
            admin,
            adapter: contract_adapter("proxy", admin, &token),
            token,
        };
        p.launch().await;
        p
    }

    /// Starts the proxy on the same addresses as before: a new instance, empty.
    async fn launch(&mut self) {
        let mut config = podgate::proxy::ProxyConfig::new(self.http, self.admin, &self.token);
        config.tls_listen = Some(self.https);
        self.handle = Some(
            podgate::proxy::start(config)
                .await
                .expect("start the proxy"),
        );
    }

    async fn kill(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Another controller, owner `other`, pushing to the same proxy.
    fn other_owner(&self) -> HttpLb {
        contract_adapter("other", self.admin, &self.token)
    }
}

fn contract_adapter(name: &str, admin: SocketAddr, token: &str) -> HttpLb {
    HttpLb::new(
        name,
        HttpLbConfig {
            base_url: format!("http://{admin}"),
            token: token.to_owned(),
            timeout: Duration::from_secs(10),
            tls: None,
        },
    )
    .unwrap()
}

/// A real HAProxy with podgate's adapter.
pub(crate) struct Haproxy {
    pub(crate) program: programs::Haproxy,
    pub(crate) lb: SocketAddr,
    pub(crate) tls: SocketAddr,
    pub(crate) adapter: HaproxyAdapter,
}

impl Haproxy {
    /// The runtime API on a unix socket, or on loopback TCP with `tcp_runtime`.
    pub(crate) async fn start(tcp_runtime: bool, min_reload_interval: Duration) -> Self {
        let mut program = programs::Haproxy::new(tcp_runtime, &["podgate"]);
        let (lb, tls) = (free_addr(), free_addr());
        let mut settings = HaproxySettings::new(
            program.runtime_addr(),
            Some(program.master_addr()),
            program.path("podgate"),
        );
        settings.binds = vec![lb];
        settings.tls_binds = vec![tls];
        settings.min_reload_interval = min_reload_interval;
        let adapter = HaproxyAdapter::new(format!("haproxy/{lb}"), settings).unwrap();
        adapter.bootstrap().await.unwrap();
        program.launch().await;
        Self {
            program,
            lb,
            tls,
            adapter,
        }
    }

    /// The worker process's id: a reload replaces the worker.
    pub(crate) async fn pid(&self) -> u32 {
        self.program.runtime().worker_pid().await.unwrap()
    }

    pub(crate) async fn apply(&self, batch: &Batch) {
        if let Err(e) = self.adapter.apply(batch).await {
            panic!("apply failed: {e}\nhaproxy log:\n{}", self.program.log());
        }
    }

    /// Every map entry (`show map` prints each entry's address, which a map replacement
    /// changes) and every podgate server with its id and state (`show servers state`
    /// without the seconds-since-change column).
    async fn fingerprint(&self) -> Vec<String> {
        let rt = self.program.runtime();
        let dir = &self.adapter.settings().config_dir;
        let mut out = Vec::new();
        for map in [
            "hosts.map",
            "paths_exact.map",
            "paths_prefix.map",
            "vhost_default.map",
            "default.map",
            "upstreams.map",
            "certificates.map",
        ] {
            let answer = rt
                .raw(&format!("show map {}", dir.join(map).display()))
                .await
                .unwrap();
            out.extend(answer.lines().map(|l| format!("{map}: {l}")));
        }
        // A replaced crt-list line gets a new line number.
        let list = dir.join("certificates.list");
        let lines = rt
            .raw(&format!("show ssl crt-list -n {}", list.display()))
            .await
            .unwrap();
        out.extend(lines.lines().map(|l| format!("crt-list: {l}")));
        let servers = rt.raw("show servers state").await.unwrap();
        for line in servers.lines().filter(|l| l.contains(" pg-")) {
            let mut f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 {
                f.remove(9); // srv_time_since_last_change
            }
            out.push(f.join(" "));
        }
        out
    }

    /// The backend podgate registered `web` as (`pg_be_…`).
    async fn podgate_backend(&self) -> String {
        let state = self
            .program
            .runtime()
            .raw("show servers state")
            .await
            .unwrap();
        state
            .lines()
            .find_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .filter(|b| b.starts_with("pg_be_"))
            })
            .expect("podgate's backend")
            .to_owned()
    }
}

/// A real Caddy with podgate's adapter.
pub(crate) struct Caddy {
    program: programs::Caddy,
    lb: SocketAddr,
    tls: SocketAddr,
    adapter: CaddyAdapter,
    /// Where the operator's own server (see [`Stage::BeforePodgate`]) listens.
    foreign: SocketAddr,
}

impl Caddy {
    async fn start(unix_admin: bool) -> Self {
        let mut program = programs::Caddy::new(unix_admin);
        let (lb, tls) = (free_addr(), free_addr());
        let addr = program.admin_addr();
        let mut settings = CaddySettings::new(addr.clone(), vec![lb]);
        settings.tls_listen = vec![tls];
        let adapter = CaddyAdapter::new(format!("caddy/{addr}"), settings).unwrap();
        program.launch().await;
        Self {
            program,
            lb,
            tls,
            adapter,
            foreign: free_addr(),
        }
    }

    /// podgate's server as Caddy holds it: every POST carries a new generation in
    /// podgate-meta, so an unchanged server means nothing was posted (and Caddy
    /// re-provisioned nothing); and the TLS app, where certificates change alone.
    async fn fingerprint(&self) -> Vec<String> {
        let mut out = Vec::new();
        for path in ["/id/podgate-server", "/config/apps/tls"] {
            let live = self.read(path).await;
            out.extend(
                serde_json::to_string_pretty(&live)
                    .unwrap()
                    .lines()
                    .map(|l| format!("{path}: {l}")),
            );
        }
        out
    }

    /// One config path, `null` when Caddy has nothing there. Caddy resets admin
    /// connections now and then while it applies a config (seen once in a full CI run):
    /// a read is retried, within a deadline.
    async fn read(&self, path: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.program.client().request("GET", path, None).await {
                Ok(body) => return serde_json::from_slice(&body).unwrap(),
                Err(podgate::lb::caddy::AdminError::Status { status, .. }) if status != 503 => {
                    return serde_json::Value::Null;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("reading Caddy's {path} again: {e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("cannot read Caddy's {path}: {e}"),
            }
        }
    }
}

/// One LB of one kind, started and driven through its adapter.
pub(crate) enum Lb {
    Proxy(Proxy),
    Haproxy(Haproxy),
    Caddy(Caddy),
}

impl Lb {
    pub(crate) async fn start(kind: Kind) -> Self {
        match kind {
            Kind::Proxy => Self::Proxy(Proxy::start().await),
            Kind::Haproxy => Self::Haproxy(Haproxy::start(false, Duration::from_millis(200)).await),
            Kind::Caddy => Self::Caddy(Caddy::start(false).await),
        }
    }

    /// A second LB of the same kind, reached the other way where the kind has two
    /// (HAProxy's runtime API on TCP, Caddy's admin API on a unix socket).
    pub(crate) async fn start_twin(kind: Kind) -> Self {
        match kind {
            Kind::Proxy => Self::Proxy(Proxy::start().await),
            Kind::Haproxy => Self::Haproxy(Haproxy::start(true, Duration::from_millis(200)).await),
            Kind::Caddy => Self::Caddy(Caddy::start(true).await),
        }
    }

    pub(crate) fn adapter(&self) -> &dyn LbAdapter {
        match self {
            Self::Proxy(p) => &p.adapter,
            Self::Haproxy(h) => &h.adapter,
            Self::Caddy(c) => &c.adapter,
        }
    }

    /// Where TLS requests go.
    pub(crate) fn tls_addr(&self) -> SocketAddr {
        match self {
            Self::Proxy(p) => p.https,
            Self::Haproxy(h) => h.tls,
            Self::Caddy(c) => c.tls,
        }
    }

    /// Where requests go (the data plane).
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Self::Proxy(p) => p.http,
            Self::Haproxy(h) => h.lb,
            Self::Caddy(c) => c.lb,
        }
    }

    pub(crate) fn log(&self) -> String {
        match self {
            Self::Proxy(_) => "(the proxy runs in this process)".into(),
            Self::Haproxy(h) => h.program.log(),
            Self::Caddy(c) => c.program.log(),
        }
    }

    /// Applies a batch that must succeed; the LB's log is in the failure.
    pub(crate) async fn apply(&self, batch: &Batch) {
        if let Err(e) = self.adapter().apply(batch).await {
            panic!("apply failed: {e}\nLB log:\n{}", self.log());
        }
    }

    pub(crate) async fn observe(&self) -> LbState {
        self.adapter().observe().await.expect("observe")
    }

    /// Stops the LB (its process, or the in-process proxy).
    pub(crate) async fn kill(&mut self) {
        match self {
            Self::Proxy(p) => p.kill().await,
            Self::Haproxy(h) => h.program.kill(),
            Self::Caddy(c) => c.program.kill(),
        }
    }

    /// Starts the LB again where it was.
    pub(crate) async fn launch(&mut self) {
        match self {
            Self::Proxy(p) => p.launch().await,
            Self::Haproxy(h) => h.program.launch().await,
            Self::Caddy(c) => c.program.launch().await,
        }
    }

    /// A new adapter for the same LB, knowing nothing (a restarted controller).
    pub(crate) fn fresh_adapter(&self) -> Box<dyn LbAdapter> {
        match self {
            Self::Proxy(p) => Box::new(contract_adapter("fresh", p.admin, &p.token)),
            Self::Haproxy(h) => Box::new(
                HaproxyAdapter::new("haproxy/fresh".into(), h.adapter.settings().clone()).unwrap(),
            ),
            Self::Caddy(c) => Box::new(
                CaddyAdapter::new("caddy/fresh".into(), c.adapter.settings().clone()).unwrap(),
            ),
        }
    }

    /// The process serving traffic, where a reload replaces it (HAProxy's worker):
    /// endpoint changes must not change it.
    pub(crate) async fn worker(&self) -> Option<u32> {
        match self {
            Self::Haproxy(h) => Some(h.pid().await),
            Self::Proxy(_) | Self::Caddy(_) => None,
        }
    }

    pub(crate) fn balance(&self) -> Balance {
        match self {
            Self::Proxy(_) => Balance::Random,
            Self::Haproxy(_) | Self::Caddy(_) => Balance::RoundRobin,
        }
    }

    /// Whether the generation is the LB's (so every adapter reads the same one), not
    /// one adapter's count (HAProxy keeps no generation of its own).
    pub(crate) fn keeps_generation(&self) -> bool {
        !matches!(self, Self::Haproxy(_))
    }

    /// Whether Gateway API rules (contract version 2) are served: the proxy does;
    /// the HAProxy and Caddy adapters leave such hosts out.
    pub(crate) fn serves_rules(&self) -> bool {
        matches!(self, Self::Proxy(_))
    }

    /// Whether a request path is matched percent-decoded (`/caf%C3%A9` is `/café`),
    /// as HAProxy and Caddy do; the proxy matches the path as sent.
    pub(crate) fn decodes_paths(&self) -> bool {
        !matches!(self, Self::Proxy(_))
    }

    pub(crate) fn after_restart(&self) -> AfterRestart {
        match self {
            Self::Proxy(_) => AfterRestart::Nothing { listening: true },
            Self::Haproxy(_) => AfterRestart::Everything,
            Self::Caddy(_) => AfterRestart::Nothing { listening: false },
        }
    }

    /// What a full re-sync must leave alone, as lines; `per_server`: whether each
    /// line is one map entry or one server (so a change shows on its own lines).
    pub(crate) async fn fingerprint(&self) -> (Vec<String>, bool) {
        match self {
            Self::Haproxy(h) => (h.fingerprint().await, true),
            Self::Caddy(c) => (c.fingerprint().await, false),
            // The contract's own view, without the generation (every batch counts).
            Self::Proxy(p) => {
                let s = p.adapter.observe().await.unwrap();
                let lines = format!(
                    "{} {} {:#?} {:#?} {:#?}",
                    s.instance, s.epoch, s.routes, s.upstreams, s.owners
                );
                (lines.lines().map(str::to_owned).collect(), false)
            }
        }
    }

    /// Puts what neither podgate nor its owner registered into the LB, at the stage
    /// the kind allows: another owner's upstream `theirs` and host `theirs.test` (the
    /// proxy, before), the operator's own server answering "theirs" (Caddy, before), a
    /// server added by hand to podgate's backend `web` (HAProxy, beside).
    pub(crate) async fn plant_foreign(&self, theirs: &Pod, stage: Stage) {
        match (self, stage) {
            (Self::Proxy(p), Stage::BeforePodgate) => {
                let routes = table(
                    vec![(
                        "theirs.test",
                        vhost(&[(PathMatch::prefix("/"), "theirs")], None),
                    )],
                    None,
                );
                p.other_owner()
                    .apply(&Batch {
                        epoch: 1,
                        owner: Some("other".into()),
                        upsert_upstreams: vec![upstream("theirs", vec![theirs.active(1)])],
                        routes: Some(routes),
                        ..Batch::default()
                    })
                    .await
                    .unwrap();
            }
            (Self::Caddy(c), Stage::BeforePodgate) => {
                let foreign = format!(
                    r#"{{"other":{{"listen":["{}"],"routes":[{{"handle":[{{"handler":"static_response","body":"theirs"}}]}}]}}}}"#,
                    c.foreign
                );
                c.program
                    .client()
                    .request(
                        "POST",
                        "/config/apps",
                        Some(format!(r#"{{"http":{{"servers":{foreign}}}}}"#).into_bytes()),
                    )
                    .await
                    .unwrap();
            }
            (Self::Haproxy(h), Stage::BesidePodgate) => {
                let be = h.podgate_backend().await;
                h.program
                    .runtime()
                    .run(
                        &format!("add server {be}/manual1 {} weight 1", theirs.addr),
                        &["New server registered"],
                    )
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }

    /// What [`Self::plant_foreign`] put there is still there and serves.
    pub(crate) async fn foreign_untouched(&self) -> Result<(), String> {
        match self {
            Self::Proxy(p) => {
                let got = who(p.http, "theirs.test", "/").await;
                let state = p.adapter.observe().await.map_err(|e| e.to_string())?;
                let held = state.upstreams.iter().any(|u| u.key == key("theirs"));
                (got == "theirs" && held)
                    .then_some(())
                    .ok_or_else(|| format!("theirs.test answers {got:?}; held: {held}"))
            }
            Self::Caddy(c) => {
                let got = who(c.foreign, "x.test", "/").await;
                (got == "theirs")
                    .then_some(())
                    .ok_or_else(|| format!("the operator's server answers {got:?}"))
            }
            Self::Haproxy(h) => {
                let state = h
                    .program
                    .runtime()
                    .raw("show servers state")
                    .await
                    .map_err(|e| e.to_string())?;
                state
                    .contains(" manual1 ")
                    .then_some(())
                    .ok_or_else(|| format!("manual1 is gone: {state}"))
            }
        }
    }

    /// Whether the LB still holds a server for `addr` in any state (HAProxy defers the
    /// deletion of a server with requests in flight; the others hold what they observe).
    pub(crate) async fn holds_server(&self, addr: SocketAddr) -> Result<bool, String> {
        match self {
            Self::Haproxy(h) => {
                let state = h
                    .program
                    .runtime()
                    .raw("show servers state")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(state.contains(&format!("-{}-{}", addr.ip(), addr.port())))
            }
            Self::Proxy(_) | Self::Caddy(_) => {
                let state = self.adapter().observe().await.map_err(|e| e.to_string())?;
                Ok(state.upstreams.iter().any(|u| {
                    u.endpoints
                        .iter()
                        .any(|e| (e.address, e.port) == (addr.ip(), addr.port()))
                }))
            }
        }
    }

    /// Podgate's servers in podgate's backends, for the ownership check: none may be
    /// left once podgate removed its endpoints (HAProxy: `pg-` servers; the others
    /// report through `observe`).
    pub(crate) async fn podgate_servers(&self) -> Vec<String> {
        match self {
            Self::Haproxy(h) => {
                let be = h.podgate_backend().await;
                let state = h
                    .program
                    .runtime()
                    .raw(&format!("show servers state {be}"))
                    .await
                    .unwrap();
                state
                    .lines()
                    .filter(|l| l.contains(" pg-"))
                    .map(str::to_owned)
                    .collect()
            }
            Self::Proxy(_) | Self::Caddy(_) => self
                .observe()
                .await
                .upstreams
                .iter()
                .filter(|u| u.key == key("web"))
                .flat_map(|u| u.endpoints.iter().map(|e| format!("{e:?}")))
                .collect(),
        }
    }
}
