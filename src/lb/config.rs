//! LB targets as the operator configures them, and the adapters built from them.
//!
//! Owns: the `targets:` section (`kind: podgate | haproxy | caddy`, one or several
//! instances per target), its validation with errors that name the target and the
//! field, and [`build_adapters`], which yields one adapter per instance. Must never
//! connect to anything: adapters connect when first used.
//!
//! ```yaml
//! targets:
//!   - name: edge
//!     kind: haproxy
//!     sockets: [/run/haproxy/a.sock, /run/haproxy/b.sock]   # runtime API, one per instance
//!     master_sockets: [/run/haproxy/a-master.sock, /run/haproxy/b-master.sock]
//!     config_dirs: [/etc/haproxy/podgate-a, /etc/haproxy/podgate-b]
//!     listen: ["0.0.0.0:80"]
//!     tls_listen: ["0.0.0.0:443"]
//!   - name: caddy
//!     kind: caddy
//!     urls: ["http://127.0.0.1:2019"]
//!     listen: ["0.0.0.0:8080"]
//!     tls_listen: ["0.0.0.0:8443"]
//!   - name: proxy
//!     kind: podgate
//!     url: http://10.0.0.5:9901
//!     token_file: /etc/podgate/token
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::LbAdapter;
use super::caddy::{AdminAddr, CaddyAdapter, CaddySettings, default_server_name};
use super::haproxy::{HaproxyAdapter, HaproxySettings, RuntimeAddr};
use super::http::{HttpLb, HttpLbConfig};

/// The `targets:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetConfig {
    #[serde(default)]
    pub(crate) targets: Vec<Target>,
}

/// Which LB a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The podgate LB contract over HTTP (the built-in proxy or a company LB).
    Podgate,
    Haproxy,
    Caddy,
}

/// One target: a name, a kind and one or more instances of it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// podgate: the admin base URL; caddy: the admin API (`http://127.0.0.1:2019`).
    pub url: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    /// haproxy: the runtime API (`/path`, `unix:/path`, `127.0.0.1:9999`);
    /// caddy: an admin unix socket (`unix:/path`).
    pub socket: Option<String>,
    #[serde(default)]
    pub sockets: Vec<String>,
    /// podgate: a file holding the bearer token (trailing whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// haproxy: the master CLI per instance (needed to create backends).
    pub master_socket: Option<String>,
    #[serde(default)]
    pub master_sockets: Vec<String>,
    /// haproxy: where podgate writes `podgate.cfg` and the maps, per instance.
    pub config_dir: Option<PathBuf>,
    #[serde(default)]
    pub config_dirs: Vec<PathBuf>,
    /// haproxy and caddy: addresses of the routing frontend / server podgate renders.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// haproxy and caddy: TLS addresses of the same routing, certificates chosen by SNI.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// haproxy: least time between two reloads (default 2000).
    pub min_reload_interval_ms: Option<u64>,
    /// Timeout of one request to the LB (default: 5 s haproxy, 30 s caddy).
    pub timeout_ms: Option<u64>,
    /// caddy: key of podgate's server in `apps.http.servers` (default `podgate`, or
    /// `podgate-o<tag>` for a controller with an owner, see `lb::owner`).
    pub server_name: Option<String>,
}

/// A configuration that cannot be turned into adapters.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot parse the targets: {0}")]
    Parse(String),
    #[error("target {target:?}, field `{field}`: {message}")]
    Invalid {
        target: String,
        field: &'static str,
        message: String,
    },
}

impl TargetConfig {
    #[cfg(test)]
    pub(crate) fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

impl Target {
    /// A target with only a name and a kind; set the rest with struct update syntax.
    pub fn new(name: &str, kind: TargetKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            url: None,
            urls: Vec::new(),
            socket: None,
            sockets: Vec::new(),
            token_file: None,
            master_socket: None,
            master_sockets: Vec::new(),
            config_dir: None,
            config_dirs: Vec::new(),
            listen: Vec::new(),
            tls_listen: Vec::new(),
            min_reload_interval_ms: None,
            timeout_ms: None,
            server_name: None,
        }
    }

    fn invalid(&self, field: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            target: self.name.clone(),
            field,
            message: message.into(),
        }
    }

    /// `one` or `many`, exactly one of them, `many` not empty.
    fn one_or_many<T: Clone>(
        &self,
        one: Option<&T>,
        many: &[T],
        names: (&'static str, &'static str),
    ) -> Result<Vec<T>, ConfigError> {
        match (one, many.is_empty()) {
            (Some(_), false) => Err(self.invalid(
                names.0,
                format!("give either `{}` or `{}`, not both", names.0, names.1),
            )),
            (Some(x), true) => Ok(vec![x.clone()]),
            (None, false) => Ok(many.to_vec()),
            (None, true) => Ok(Vec::new()),
        }
    }

    /// Refuses fields that mean nothing for this kind, so typos show.
    fn only_for(
        &self,
        kind: TargetKind,
        field: &'static str,
        set: bool,
    ) -> Result<(), ConfigError> {
        if set && self.kind != kind {
            return Err(self.invalid(field, format!("only applies to kind {kind:?}")));
        }
        Ok(())
    }

    fn check_fields(&self) -> Result<(), ConfigError> {
        use TargetKind::{Caddy, Haproxy, Podgate};
        self.only_for(Podgate, "token_file", self.token_file.is_some())?;
        let master = self.master_socket.is_some() || !self.master_sockets.is_empty();
        self.only_for(Haproxy, "master_socket(s)", master)?;
        let dirs = self.config_dir.is_some() || !self.config_dirs.is_empty();
        self.only_for(Haproxy, "config_dir(s)", dirs)?;
        let reload = self.min_reload_interval_ms.is_some();
        self.only_for(Haproxy, "min_reload_interval_ms", reload)?;
        self.only_for(Caddy, "server_name", self.server_name.is_some())?;
        if self.kind == Podgate && !self.listen.is_empty() {
            return Err(self.invalid("listen", "does not apply to kind podgate"));
        }
        if self.kind == Podgate && !self.tls_listen.is_empty() {
            return Err(self.invalid("tls_listen", "does not apply to kind podgate"));
        }
        if self.kind == Haproxy && (self.url.is_some() || !self.urls.is_empty()) {
            return Err(self.invalid("url(s)", "kind haproxy is reached through `socket(s)`"));
        }
        if self.kind == Podgate && (self.socket.is_some() || !self.sockets.is_empty()) {
            return Err(self.invalid("socket(s)", "kind podgate is reached through `url(s)`"));
        }
        Ok(())
    }

    fn instances(&self) -> Result<Vec<String>, ConfigError> {
        let urls = self.one_or_many(self.url.as_ref(), &self.urls, ("url", "urls"))?;
        let sockets =
            self.one_or_many(self.socket.as_ref(), &self.sockets, ("socket", "sockets"))?;
        let all: Vec<String> = urls.into_iter().chain(sockets).collect();
        if all.is_empty() {
            return Err(self.invalid("urls", "no instance: give `url(s)` or `socket(s)`"));
        }
        Ok(all)
    }

    fn timeout(&self, default_ms: u64) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(default_ms))
    }

    fn haproxy(
        &self,
        instances: &[String],
        owner: Option<&str>,
    ) -> Result<Vec<Box<dyn LbAdapter>>, ConfigError> {
        let n = instances.len();
        let masters = self.one_or_many(
            self.master_socket.as_ref(),
            &self.master_sockets,
            ("master_socket", "master_sockets"),
        )?;
        let dirs = self.one_or_many(
            self.config_dir.as_ref(),
            &self.config_dirs,
            ("config_dir", "config_dirs"),
        )?;
        if !masters.is_empty() && masters.len() != n {
            return Err(self.invalid(
                "master_sockets",
                format!("needs one entry per socket ({n})"),
            ));
        }
        if dirs.len() != n {
            return Err(self.invalid("config_dirs", format!("needs one entry per socket ({n})")));
        }
        let mut out: Vec<Box<dyn LbAdapter>> = Vec::new();
        for (i, raw) in instances.iter().enumerate() {
            let runtime =
                RuntimeAddr::parse(raw).map_err(|e| self.invalid("sockets", e.to_string()))?;
            let master = masters
                .get(i)
                .map(|m| {
                    RuntimeAddr::parse(m).map_err(|e| self.invalid("master_sockets", e.to_string()))
                })
                .transpose()?;
            let mut s = HaproxySettings::new(runtime.clone(), master, dirs[i].clone());
            s.binds.clone_from(&self.listen);
            s.tls_binds.clone_from(&self.tls_listen);
            s.command_timeout = self.timeout(5_000);
            s.owner = owner.map(str::to_owned);
            if let Some(ms) = self.min_reload_interval_ms {
                s.min_reload_interval = Duration::from_millis(ms);
            }
            let a = HaproxyAdapter::new(format!("{}/{runtime}", self.name), s)
                .map_err(|e| self.invalid("config_dirs", e.to_string()))?;
            out.push(Box::new(a));
        }
        Ok(out)
    }

    fn caddy(
        &self,
        instances: &[String],
        owner: Option<&str>,
    ) -> Result<Vec<Box<dyn LbAdapter>>, ConfigError> {
        let mut out: Vec<Box<dyn LbAdapter>> = Vec::new();
        for raw in instances {
            let admin = AdminAddr::parse(raw).map_err(|e| self.invalid("urls", e.to_string()))?;
            let mut s = CaddySettings::new(admin.clone(), self.listen.clone());
            s.tls_listen.clone_from(&self.tls_listen);
            s.timeout = self.timeout(30_000);
            s.owner = owner.map(str::to_owned);
            s.server_name = self
                .server_name
                .clone()
                .unwrap_or_else(|| default_server_name(owner));
            let a = CaddyAdapter::new(format!("{}/{admin}", self.name), s)
                .map_err(|e| self.invalid("server_name", e.to_string()))?;
            out.push(Box::new(a));
        }
        Ok(out)
    }

    fn podgate(&self, instances: &[String]) -> Result<Vec<Box<dyn LbAdapter>>, ConfigError> {
        let token: String = self
            .token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim_end().to_owned())
                    .map_err(|e| {
                        self.invalid("token_file", format!("cannot read {}: {e}", p.display()))
                    })
            })
            .transpose()?
            .unwrap_or_default();
        let mut out: Vec<Box<dyn LbAdapter>> = Vec::new();
        for url in instances {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| self.invalid("url", format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(self.invalid("url", format!("{url:?} must be http:// or https://")));
            }
            let config = HttpLbConfig {
                base_url: url.clone(),
                token: token.clone(),
                timeout: self.timeout(10_000),
                tls: None,
            };
            // The adapter appends the URL to the name.
            let lb =
                HttpLb::new(&self.name, config).map_err(|e| self.invalid("url", e.to_string()))?;
            out.push(Box::new(lb));
        }
        Ok(out)
    }
}

/// One adapter per configured instance, in configuration order.
/// `owner` is the controller pushing (`Batch::owner`); HAProxy and Caddy adapters put
/// its tag into every object they create, so that controllers sharing one LB stay apart.
pub(crate) fn build_adapters(
    config: &TargetConfig,
    owner: Option<&str>,
) -> Result<Vec<Box<dyn LbAdapter>>, ConfigError> {
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for t in &config.targets {
        if t.name.is_empty() || !names.insert(t.name.as_str()) {
            return Err(t.invalid("name", "must be non-empty and unique"));
        }
        t.check_fields()?;
        let instances = t.instances()?;
        out.extend(match t.kind {
            TargetKind::Haproxy => t.haproxy(&instances, owner)?,
            TargetKind::Caddy => t.caddy(&instances, owner)?,
            TargetKind::Podgate => t.podgate(&instances)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<Vec<String>, String> {
        let cfg = TargetConfig::from_yaml(yaml).map_err(|e| e.to_string())?;
        build_adapters(&cfg, None)
            .map(|v| v.iter().map(|a| a.name().to_owned()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_adapter_per_instance() {
        let names = build(
            "targets:\n\
             - {name: edge, kind: haproxy, sockets: [/run/a.sock, 127.0.0.1:9999], \
                master_sockets: [/run/am.sock, /run/bm.sock], config_dirs: [/etc/pa, /etc/pb]}\n\
             - {name: c, kind: caddy, urls: ['http://127.0.0.1:2019', unix:/run/caddy.sock], listen: ['127.0.0.1:8080']}\n",
        )
        .unwrap();
        assert_eq!(
            names,
            vec![
                "edge/unix:/run/a.sock",
                "edge/tcp:127.0.0.1:9999",
                "c/http://127.0.0.1:2019",
                "c/unix:/run/caddy.sock"
            ]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "targets: [{name: x, kind: caddy, url: 'http://127.0.0.1:1', colour: red}]",
                "colour",
            ),
            ("targets: [{name: x, kind: nginx, url: u}]", "nginx"),
            ("targets: [{name: x, kind: caddy}]", "`urls`"),
            (
                "targets: [{name: x, kind: caddy, url: 'http://127.0.0.1:1', urls: ['http://127.0.0.1:2']}]",
                "`url`",
            ),
            (
                "targets: [{name: x, kind: haproxy, sockets: [/a, /b], config_dirs: [/c]}]",
                "`config_dirs`",
            ),
            (
                "targets: [{name: x, kind: haproxy, socket: /a, config_dir: 'rel'}]",
                "`config_dirs`",
            ),
            (
                "targets: [{name: x, kind: caddy, url: 'http://127.0.0.1:1', master_socket: /m}]",
                "master_socket",
            ),
            (
                "targets: [{name: x, kind: caddy, url: 'http://127.0.0.1:1'}, {name: x, kind: caddy, url: 'http://127.0.0.1:2'}]",
                "`name`",
            ),
            (
                "targets: [{name: x, kind: haproxy, socket: 'nonsense', config_dir: /c}]",
                "`sockets`",
            ),
        ];
        for (yaml, want) in cases {
            let err = build(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err:?} should mention {want}");
        }
    }

    #[test]
    fn podgate_kind_builds_one_http_adapter_per_url() {
        let config = TargetConfig::from_yaml(
            "targets: [{name: p, kind: podgate, urls: ['http://127.0.0.1:9901', 'http://127.0.0.1:9902']}]",
        )
        .unwrap();
        let adapters = build_adapters(&config, None).unwrap();
        assert_eq!(adapters.len(), 2);
        assert_eq!(adapters[1].name(), "p/http://127.0.0.1:9902");
        let err = build("targets: [{name: p, kind: podgate, url: 'ftp://x'}]").unwrap_err();
        assert!(err.contains("url"), "{err}");
    }
}
