//! The proxy's configuration file (`podgate proxy -c proxy.yaml`).
//!
//! Owns: parsing and validating the YAML, reading the admin token file, defaults for
//! limits, timeouts and outlier ejection. Must never open sockets or start tasks; a bad
//! value is reported with the name of its field, never silently replaced.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A day bounds every configured duration: larger values are typos, and deadlines stay
/// far from overflowing the clock.
const DAY_MS: u64 = 86_400_000;

/// Why a configuration could not be loaded. Every message names the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Unknown field, bad address, wrong type: the YAML parser's message names the field.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("admin.token_file: cannot read {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The admin API's bearer token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token given directly (tests, `podgate demo`). Surrounding whitespace is trimmed.
    pub(crate) fn new(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn default_state_file_interval_ms() -> u64 {
    1000
}

/// `proxy.yaml`. Field names are part of podgate's interface.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `text` (default) or `json` log lines; `--log-format` beats it.
    #[serde(default)]
    pub log_format: crate::logging::LogFormat,
    /// Plain HTTP (HTTP/1.1 and h2c).
    pub(crate) listen: SocketAddr,
    /// HTTPS with SNI certificate selection, ALPN h2 and http/1.1.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// Id of an installed certificate served to clients that send no SNI name or one
    /// that no certificate covers. Without it such handshakes fail.
    #[serde(default)]
    pub tls_default_certificate: Option<String>,
    pub admin: AdminConfig,
    /// Optional plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` without the
    /// admin token (Prometheus, kubelet or load-balancer probes); the admin API stays on
    /// `admin.listen` behind its token. Capped at `admin.max_connections` of its own.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// Peers (addresses or CIDRs) whose `X-Forwarded-*`, `X-Real-IP` and `Forwarded`
    /// headers describe their client and are kept; from anyone else they are replaced.
    /// Empty by default: the proxy is the first hop.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Remove dot-segments and repeated slashes from a request's path before routing
    /// it, and forward it so (`/a/../b//c` → `/b/c`): the upstream serves what was
    /// routed. On by default.
    #[serde(default = "yes")]
    pub normalize_paths: bool,
    /// One line per answered request; off by default.
    #[serde(default)]
    pub access_log: super::access_log::AccessLogConfig,
    /// Where the proxy keeps what it holds (routes, upstreams, certificates with their
    /// keys; mode 0600), written after accepted batches (see `state_file_interval_ms`)
    /// off the request path and restored at start, so
    /// that a restarted proxy serves at once. A file that cannot be read is reported
    /// and ignored. Without it a restarted proxy holds nothing until a controller pushes.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// At most one state-file write per this many milliseconds: a write after a quiet
    /// spell happens at once, the batches of a rollout are coalesced. A write is the
    /// whole state (at 150,000 endpoints, tens of MB); a proxy killed in between
    /// restarts from a state this much older, which the controller corrects within a
    /// second. Default 1000.
    #[serde(default = "default_state_file_interval_ms")]
    pub state_file_interval_ms: u64,
}

fn yes() -> bool {
    true
}

/// Addresses or CIDRs; a plain address is its own /32 or /128.
fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts: Vec<String> = Deserialize::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "trusted_proxies: `{t}` is not an IP address or CIDR"
                    ))
                })
        })
        .collect()
}

impl ProxyConfig {
    /// Whether `peer` is one of `trusted_proxies`.
    pub(crate) fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub(crate) listen: SocketAddr,
    /// File holding the bearer token. Read once by [`ProxyConfig::load`].
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The token itself; filled from `token_file`, or given directly by tests.
    #[serde(skip)]
    pub(crate) token: Option<Token>,
    /// Serve the admin API over TLS, optionally requiring client certificates (mTLS).
    #[serde(default)]
    pub tls: Option<AdminTls>,
    /// Admin connections open at once; more wait in the kernel's backlog. Small and
    /// separate from `limits.max_connections`, so that admin clients can never take
    /// the data plane's connections or file descriptors.
    #[serde(default = "AdminConfig::default_max_connections")]
    pub max_connections: usize,
}

impl AdminConfig {
    fn default_max_connections() -> usize {
        64
    }
}

/// TLS for the admin listener. The bearer token is required in any case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// PEM certificate chain of the admin listener.
    pub cert_file: PathBuf,
    /// PEM private key of the admin listener.
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate signed by one.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Resource limits. Requests over a limit get a clean 4xx, connections over the cap wait.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head in bytes (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request.
    pub max_headers: usize,
    /// Most client connections open at once, across listeners.
    pub max_connections: usize,
    /// Extra attempts on another endpoint after a connect error.
    pub(crate) retries: usize,
    /// Largest `POST /v1/batch` body.
    pub max_admin_body_bytes: usize,
    /// Upstreams with their own metric series; requests of any further upstream are
    /// counted as `upstream="_other"` (bounded cardinality). 0 turns per-upstream
    /// metrics off.
    pub metrics_upstreams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            retries: 2,
            max_admin_body_bytes: 256 * 1024 * 1024,
            metrics_upstreams: 2_000,
        }
    }
}

/// Timeouts in milliseconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Time a client has to send a whole request head (slowloris guard). It also bounds
    /// the TLS handshake, and closes any client or admin connection (HTTP/1.1, h2c, h2)
    /// that has no request in flight this long, from its start: an HTTP/2 connection
    /// that only pings is idle.
    pub header_read_ms: u64,
    /// Idle keep-alive connections to upstreams are closed after this.
    pub(crate) upstream_idle_ms: u64,
    /// Time an upstream has to send its response head.
    pub upstream_response_ms: u64,
    /// At SIGTERM or after a handover: how long requests in flight may take to finish
    /// before the process exits anyway (idle keep-alive connections close at once).
    pub shutdown_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            header_read_ms: 10_000,
            upstream_idle_ms: 60_000,
            upstream_response_ms: 60_000,
            shutdown_ms: 20_000,
        }
    }
}

impl Timeouts {
    pub(crate) fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub(crate) fn header_read(&self) -> Duration {
        Duration::from_millis(self.header_read_ms)
    }
    pub(crate) fn upstream_idle(&self) -> Duration {
        Duration::from_millis(self.upstream_idle_ms)
    }
    pub(crate) fn upstream_response(&self) -> Duration {
        Duration::from_millis(self.upstream_response_ms)
    }
    pub(crate) fn shutdown(&self) -> Duration {
        Duration::from_millis(self.shutdown_ms)
    }
}

/// Passive outlier ejection. A failure is a connect error, a connection lost before the
/// response head, an upstream response timeout, or a 5xx answer.
/// After `consecutive_failures` failures in a row an endpoint
/// takes no new requests for `base_ejection_ms`, doubled per repeated ejection up to
/// `max_ejection_ms`. A success resets both.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_ms: 10_000,
            max_ejection_ms: 300_000,
        }
    }
}

impl OutlierConfig {
    pub(crate) fn base(&self) -> Duration {
        Duration::from_millis(self.base_ejection_ms)
    }
    pub(crate) fn max(&self) -> Duration {
        Duration::from_millis(self.max_ejection_ms)
    }
}

impl ProxyConfig {
    /// A configuration for tests and `podgate demo`: plain listener, admin listener and
    /// the token given directly. Use port 0 to let the OS choose.
    pub fn new(listen: SocketAddr, admin_listen: SocketAddr, token: &str) -> Self {
        Self {
            log_format: crate::logging::LogFormat::Text,
            listen,
            tls_listen: None,
            tls_default_certificate: None,
            admin: AdminConfig {
                listen: admin_listen,
                token_file: None,
                token: Some(Token::new(token)),
                tls: None,
                max_connections: AdminConfig::default_max_connections(),
            },
            health_listen: None,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            outlier: OutlierConfig::default(),
            trusted_proxies: Vec::new(),
            normalize_paths: true,
            state_file: None,
            state_file_interval_ms: default_state_file_interval_ms(),
            access_log: super::access_log::AccessLogConfig::default(),
        }
    }

    /// Reads and validates `path`, including the token file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(file) = &config.admin.token_file {
            let raw = std::fs::read_to_string(file).map_err(|source| ConfigError::TokenFile {
                path: file.clone(),
                source,
            })?;
            config.admin.token = Some(Token::new(&raw));
        }
        config.validate()?;
        Ok(config)
    }

    /// Everything `load` checks plus what `start` reads before it binds (the admin
    /// listener's certificates): `podgate check`.
    pub fn check(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load(path)?;
        if let Some(tls) = &config.admin.tls {
            super::tls::admin_server_config(tls)?;
        }
        Ok(config)
    }

    /// Checks values that parse but make no sense. [`crate::proxy::start`] calls it too.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        match &self.admin.token {
            None => return invalid("admin.token_file", "is required"),
            Some(t) if t.0.is_empty() => return invalid("admin.token_file", "the token is empty"),
            Some(_) => {}
        }
        if !(1..=4096).contains(&self.admin.max_connections) {
            return invalid("admin.max_connections", "must be between 1 and 4096");
        }
        if self.limits.max_connections == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        if self.limits.max_connections > 1 << 24 {
            return invalid("limits.max_connections", "must be at most 16777216");
        }
        if self.limits.max_header_bytes < 8192 {
            return invalid("limits.max_header_bytes", "must be at least 8192");
        }
        if self.limits.max_headers == 0 {
            return invalid("limits.max_headers", "must be at least 1");
        }
        if self.outlier.consecutive_failures == 0 {
            return invalid("outlier.consecutive_failures", "must be at least 1");
        }
        if self.outlier.max_ejection_ms < self.outlier.base_ejection_ms {
            return invalid(
                "outlier.max_ejection_ms",
                "must not be below outlier.base_ejection_ms",
            );
        }
        if self.outlier.max_ejection_ms > DAY_MS {
            return invalid(
                "outlier.max_ejection_ms",
                "must be at most a day (86400000)",
            );
        }
        for (field, ms) in [
            ("timeouts.connect_ms", self.timeouts.connect_ms),
            ("timeouts.header_read_ms", self.timeouts.header_read_ms),
            ("timeouts.upstream_idle_ms", self.timeouts.upstream_idle_ms),
            (
                "timeouts.upstream_response_ms",
                self.timeouts.upstream_response_ms,
            ),
        ] {
            if ms == 0 || ms > DAY_MS {
                return invalid(field, "must be above 0 and at most a day (86400000)");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<ProxyConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("lb.token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, yaml.replace("TOKEN", token.to_str().unwrap())).unwrap();
        ProxyConfig::load(&path)
    }

    #[test]
    fn the_documented_example_loads() {
        let c = load(
            "listen: 0.0.0.0:8080\ntls_listen: 0.0.0.0:8443\nadmin:\n  listen: 127.0.0.1:9901\n  token_file: TOKEN\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.tls_listen.unwrap().port(), 8443);
        assert_eq!(c.admin.token, Some(Token::new("s3cret")));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "listen: 0.0.0.0:8080\nlisten_typo: 1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: TOKEN\n",
                "listen_typo",
            ),
            (
                "listen: nowhere\nadmin:\n  listen: 127.0.0.1:1\n  token_file: TOKEN\n",
                "listen",
            ),
            (
                "listen: 0.0.0.0:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: /nonexistent/token\n",
                "admin.token_file",
            ),
            (
                "listen: 0.0.0.0:1\nadmin:\n  listen: 127.0.0.1:1\n",
                "admin.token_file",
            ),
            (
                "listen: 0.0.0.0:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: TOKEN\nlimits:\n  max_connections: 0\n",
                "limits.max_connections",
            ),
            (
                "listen: 0.0.0.0:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: TOKEN\ntrusted_proxies: [10.0.0.0/8, proxy.local]\n",
                "trusted_proxies: `proxy.local`",
            ),
            (
                "listen: 0.0.0.0:1\nadmin:\n  listen: 127.0.0.1:1\n  token_file: TOKEN\n  max_connections: 0\n",
                "admin.max_connections",
            ),
        ];
        for (yaml, field) in cases {
            let err = load(yaml).unwrap_err().to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        assert!(!format!("{:?}", Token::new("s3cret")).contains("s3cret"));
    }
}
