//! `podgate weights get|set` and `podgate migrate`: checks the arguments locally (so a
//! typo never reaches the controller), sends them to `/v1/weights` or `/v1/migrations`,
//! and renders the answer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use podgate_core::model::shares::ClusterWeights;
use podgate_core::weights::{App, parse_duration};

/// Why a command failed. [`CliError::exit_code`] is 2 for bad input, 1 otherwise.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the controller at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the controller answered {status}: {message}")]
    Refused { status: u16, message: String },
}

impl CliError {
    /// 2 for input the user can fix (also when the controller refused it as such).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Token { .. } => 2,
            Self::Refused { status, .. } if *status == 400 || *status == 401 => 2,
            Self::Unreachable { .. } | Self::Refused { .. } => 1,
        }
    }
}

/// A client of one controller's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// `controller` is the admin URL (`http://127.0.0.1:9900`); `token_file` holds the
    /// bearer token that writes need when the controller has one.
    pub fn new(controller: &str, token_file: Option<&Path>) -> Result<Self, CliError> {
        let base = controller.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--controller: {controller:?} is not an http:// or https:// URL"
            )));
        }
        let token = match token_file {
            Some(path) => {
                let raw = std::fs::read_to_string(path).map_err(|source| CliError::Token {
                    path: path.to_owned(),
                    source,
                })?;
                Some(raw.trim().to_owned())
            }
            None => None,
        };
        // Plain HTTP is the norm (the admin API listens on loopback or a pod IP); https
        // works with a certificate the client is told to trust, never with none.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS setup: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|source| CliError::Unreachable {
                url: base.clone(),
                source,
            })?;
        Ok(Self { base, token, http })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unreachable = |source| CliError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(CliError::Refused { status, message })
    }

    /// `GET path` of the admin API, as JSON (`podgate status`, `get`, `explain`, `why`).
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `podgate weights get`: the controller's weights view.
    pub async fn get_weights(&self) -> Result<Value, CliError> {
        self.send(reqwest::Method::GET, "/v1/weights", None).await
    }

    /// `podgate weights set idc=20 tke=80 [--app ns/svc]`; no weights: back to the
    /// configuration (global) or to the annotations (`--app`).
    pub async fn set_weights(
        &self,
        weights: &[String],
        app: Option<&str>,
    ) -> Result<Value, CliError> {
        let weights = if weights.is_empty() {
            None
        } else {
            let w = ClusterWeights::parse(&weights.join(","))
                .map_err(|e| CliError::Usage(format!("weights: {e}")))?;
            Some(w.to_string())
        };
        if let Some(app) = app {
            App::parse(app).map_err(|e| CliError::Usage(format!("--app: {e}")))?;
        }
        let body = json!({ "weights": weights, "app": app });
        self.send(reqwest::Method::PUT, "/v1/weights", Some(body))
            .await
    }

    /// `podgate migrate ns/svc --to tke --step 10 --every 30s`.
    pub async fn migrate(
        &self,
        app: &str,
        to: &str,
        step: u32,
        every: &str,
    ) -> Result<Value, CliError> {
        App::parse(app).map_err(|e| CliError::Usage(format!("app: {e}")))?;
        if !(1..=100).contains(&step) {
            return Err(CliError::Usage(format!(
                "--step: {step} is not between 1 and 100"
            )));
        }
        parse_duration(every).map_err(|e| CliError::Usage(format!("--every: {e}")))?;
        if to.is_empty() {
            return Err(CliError::Usage("--to: a cluster name is needed".to_owned()));
        }
        let body = json!({ "app": app, "to": to, "step": step, "every": every });
        self.send(reqwest::Method::POST, "/v1/migrations", Some(body))
            .await
    }

    /// `podgate migrate --cancel ns/svc`: stops the ramp where it stands.
    /// `podgate migrate APP --pause` (`paused`) or `--resume`.
    pub async fn pause_migration(&self, app: &str, paused: bool) -> Result<Value, CliError> {
        App::parse(app).map_err(|e| CliError::Usage(format!("app: {e}")))?;
        self.send(
            reqwest::Method::PUT,
            &format!("/v1/migrations/{app}"),
            Some(json!({ "paused": paused })),
        )
        .await
    }

    pub async fn cancel_migration(&self, app: &str) -> Result<Value, CliError> {
        let app = App::parse(app).map_err(|e| CliError::Usage(format!("app: {e}")))?;
        let path = format!("/v1/migrations/{}/{}", app.namespace, app.service);
        self.send(reqwest::Method::DELETE, &path, None).await
    }
}

/// The weights view for people.
pub(crate) fn render(view: &Value) -> String {
    let mut out = String::new();
    let clusters: Vec<String> = view["clusters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(c, w)| format!("{c}={w}"))
        .collect();
    let origin = match view["global"].as_str() {
        Some(_) => "run-time",
        None => "configured",
    };
    let _ = writeln!(out, "clusters: {}  ({origin})", clusters.join(" "));
    for (app, w) in view["apps"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "app {app}: {}", w.as_str().unwrap_or(""));
    }
    for (app, m) in view["migrations"].as_object().into_iter().flatten() {
        let _ = write!(
            out,
            "migration {app} -> {}: {}% ({} every {}), {}",
            m["target"].as_str().unwrap_or("?"),
            m["percent"],
            m["step"],
            m["every"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
        );
        if let Some(reason) = m["paused"]["reason"].as_str() {
            let _ = write!(out, ": {reason}");
        }
        out.push('\n');
    }
    for p in view["problems"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "problem: {}: {}",
            p["key"].as_str().unwrap_or("?"),
            p["message"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "stored in {}",
        view["configmap"].as_str().unwrap_or("?")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_input_never_reaches_the_controller() {
        // Port 9 (discard) on loopback: any request would fail as Unreachable, not Usage.
        let client = AdminClient::new("http://127.0.0.1:9", None).unwrap();
        let w = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        for (weights, app) in [
            (w(&["idc=x"]), None),
            (w(&["idc=0", "tke=0"]), None),
            (w(&["idc=1"]), Some("not-an-app")),
        ] {
            let err = client.set_weights(&weights, app).await.unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
        }
        for (app, step, every) in [("shop", 10, "1s"), ("a/b", 0, "1s"), ("a/b", 10, "soon")] {
            let err = client.migrate(app, "tke", step, every).await.unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{err}");
        }
        assert!(AdminClient::new("127.0.0.1:9900", None).is_err());
    }

    #[test]
    fn renders_a_view() {
        let view = json!({
            "configmap": "idc: podgate-system/podgate-weights",
            "clusters": {"idc": 20, "tke": 80}, "global": "idc=20,tke=80",
            "apps": {"shop/web": "idc=0,tke=100"},
            "migrations": {"shop/api": {"target": "tke", "percent": 40, "step": 10,
                "every": "30s", "state": "paused", "paused": {"reason": "tke has no Active endpoint for shop/api"}}},
            "problems": [],
        });
        let text = render(&view);
        assert!(
            text.contains("clusters: idc=20 tke=80  (run-time)"),
            "{text}"
        );
        assert!(
            text.contains("migration shop/api -> tke: 40% (10 every 30s), paused: tke has"),
            "{text}"
        );
    }
}
