//! The HTTP adapter for the podgate LB contract (`docs/lb-contract.openapi.yaml`): drives
//! the built-in proxy's admin API, or any company LB that implements the same contract.
//!
//! Owns: one authenticated HTTP client per target and the mapping of answers to
//! [`LbError`]: 409 → `Fenced`, 401/403 → `Transient` (a token, not the batch), other
//! 4xx → `Rejected`, 5xx and network trouble → `Transient`. Must never log the token or
//! certificate keys.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::{BoxFuture, LbAdapter, LbError};
use podgate_core::model::{Batch, LbState, StateSummary};

/// How to reach one LB that speaks the contract.
#[derive(Clone)]
pub struct HttpLbConfig {
    /// `http://127.0.0.1:9901`; the adapter appends `/v1/...`.
    pub base_url: String,
    pub token: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// TLS settings for an `https://` base URL (root certificates, client certificate
    /// for mTLS). `None`: no trusted roots, so only plain `http://` works.
    pub tls: Option<rustls::ClientConfig>,
}

impl fmt::Debug for HttpLbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLbConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An LB driven through the podgate LB contract over HTTP.
#[derive(Debug)]
pub struct HttpLb {
    name: String,
    base_url: String,
    token: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    epoch: Option<u64>,
}

impl HttpLb {
    /// Builds the client; fails only if the TLS settings are unusable.
    pub fn new(name: &str, config: HttpLbConfig) -> Result<Self, LbError> {
        let tls = match config.tls {
            Some(tls) => tls,
            None => rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| LbError::Rejected(format!("TLS setup: {e}")))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_idle_timeout(POOL_IDLE)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| LbError::Rejected(format!("HTTP client setup: {e}")))?;
        Ok(Self {
            name: format!("{name}/{}", config.base_url),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            token: config.token,
            client,
        })
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, LbError> {
        let request = request.bearer_auth(&self.token);
        let again = request.try_clone();
        let response = match (request.send().await, again) {
            // The LB may close a pooled connection just as a request goes out on it;
            // every request of the contract is idempotent, so one retry is safe.
            (Err(e), Some(again)) if stale_connection(&e) => again.send().await,
            (result, _) => result,
        }
        .map_err(|e| {
            LbError::Transient(format!("{}: {}", self.name, crate::logging::causes(&e)))
        })?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<T>()
                .await
                .map_err(|e| LbError::Transient(format!("{}: bad answer: {e}", self.name)));
        }
        let text = response.text().await.unwrap_or_default();
        let parsed: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let reason = parsed
            .as_ref()
            .map_or_else(|| text.clone(), |b| b.error.clone());
        Err(match status {
            StatusCode::CONFLICT => LbError::Fenced(parsed.and_then(|b| b.epoch).unwrap_or(0)),
            // Not the batch's fault: no item is to blame, and a rotated token heals it.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                LbError::Transient(format!("{status}: {reason} (is the token right?)"))
            }
            s if s.is_client_error() => LbError::Rejected(format!("{s}: {reason}")),
            s => LbError::Transient(format!("{s}: {reason}")),
        })
    }
}

/// How long an idle connection stays in the client's pool: below the built-in proxy's
/// 10 s idle timeout (its header-read timeout), so podgate closes first.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Whether `e` is a request that failed on its way out or before any answer (the
/// connection closed or reset), rather than a timeout or a refused connection.
fn stale_connection(e: &reqwest::Error) -> bool {
    e.is_request() && !e.is_timeout() && !e.is_connect()
}

/// Endpoints per batch of a full sync (see `LbAdapter::full_sync_part`).
const FULL_SYNC_PART_ENDPOINTS: usize = 10_000;

impl LbAdapter for HttpLb {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let url = format!("{}/v1/batch", self.base_url);
            self.send(self.client.post(url).json(batch)).await
        })
    }

    /// The LB contract includes `patch_upstreams`.
    fn accepts_patches(&self) -> bool {
        true
    }

    /// About 1.3 MB of JSON per part.
    fn fences(&self) -> bool {
        true
    }

    /// The contract's version 2; a company LB of version 1 refuses `rules` with 400,
    /// which quarantines the route table (`LbRejected`).
    fn serves_rules(&self) -> bool {
        true
    }

    fn full_sync_part(&self) -> Option<usize> {
        Some(FULL_SYNC_PART_ENDPOINTS)
    }

    fn observe(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        Box::pin(async move {
            let url = format!("{}/v1/state", self.base_url);
            self.send(self.client.get(url)).await
        })
    }

    fn observe_keys(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        Box::pin(async move {
            let url = format!("{}/v1/state?endpoints=false", self.base_url);
            self.send(self.client.get(url)).await
        })
    }

    fn summary(&self) -> BoxFuture<'_, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let url = format!("{}/v1/summary", self.base_url);
            self.send(self.client.get(url)).await
        })
    }
}
