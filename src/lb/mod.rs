//! LB adapters: each speaks one load balancer's own API and turns the LB contract's
//! [`Batch`] into that LB's operations.
//!
//! Owns: translating desired state into an LB's operations, reading back what the LB
//! holds. Must never decide *what* to route (that is the Index) or *when* to push (that
//! is `sync`). Never templates user input into an LB configuration language.

pub mod caddy;
pub mod config;
pub mod haproxy;
pub(crate) mod http;
pub(crate) mod owner;
pub(crate) mod rules;
pub(crate) mod tls_check;

use std::future::Future;
use std::pin::Pin;

use podgate_core::model::{Batch, LbState, StateSummary, Upstream, UpstreamKey};

pub use http::{HttpLb, HttpLbConfig};

/// A boxed future, so adapters can sit behind `dyn LbAdapter`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a push failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// Network trouble, timeouts, 5xx: try again later.
    #[error("LB unreachable or failing: {0}")]
    Transient(String),
    /// The LB refused the batch as invalid (4xx): retrying the same batch will not help.
    #[error("LB refused the change: {0}")]
    Rejected(String),
    /// A newer controller pushed with a higher epoch: this one must stop pushing.
    #[error("fenced: the LB accepted a newer epoch ({0})")]
    Fenced(u64),
}

impl LbError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// A short label for metrics.
    /// Every value `metric_label` returns, so that each series exists from the start.
    pub(crate) const METRIC_LABELS: [&'static str; 3] = ["transient", "rejected", "fenced"];

    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::Transient(_) => "transient",
            Self::Rejected(_) => "rejected",
            Self::Fenced(_) => "fenced",
        }
    }
}

/// Why an LB target's settings cannot be used: found when the adapter is made, before
/// any push.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0:?} is not an admin address like http://127.0.0.1:2019 or unix:/path")]
    CaddyAdmin(String),
    #[error("{0:?} is neither a unix socket path nor an address like 127.0.0.1:9999")]
    HaproxyRuntime(String),
    #[error("server_name {0:?} must be letters, digits, _ and -")]
    ServerName(String),
    #[error("config_dir {0:?} must be an absolute path of letters, digits and / - . _ +")]
    ConfigDir(String),
    #[error(
        "config_dir {dir} holds the files of owner {held:?}, not {me:?}: every controller sharing one HAProxy needs its own config_dir"
    )]
    ConfigDirTaken {
        dir: String,
        held: String,
        me: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// One LB instance. Implementations must be idempotent: applying the same batch twice
/// leaves the LB as applying it once.
pub trait LbAdapter: Send + Sync {
    /// A name for logs and the admin view (`lb1/http://127.0.0.1:9901`).
    fn name(&self) -> &str;

    /// Applies one batch atomically where the LB allows it.
    fn apply<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<StateSummary, LbError>>;

    /// Reads back what the LB holds, for restart and drift detection. Only what podgate
    /// registered is reported; other members of a shared LB are invisible here.
    fn observe(&self) -> BoxFuture<'_, Result<LbState, LbError>>;

    /// What a full sync needs to know of the LB: like `observe`, but upstreams may come
    /// without their endpoints (the built-in proxy's state is tens of MB with them).
    fn observe_keys(&self) -> BoxFuture<'_, Result<LbState, LbError>> {
        self.observe()
    }

    /// Where the LB is (instance, generation, epoch) without its contents: polled for
    /// drift, so it must be cheap. The default reads everything through `observe`.
    fn summary(&self) -> BoxFuture<'_, Result<StateSummary, LbError>> {
        Box::pin(async move {
            let state = self.observe().await?;
            Ok(StateSummary {
                instance: state.instance,
                generation: state.generation,
                epoch: state.epoch,
            })
        })
    }

    /// Whether batches may carry `patch_upstreams` (endpoint-level changes). Adapters
    /// that turn batches into their LB's own operations take whole upstreams.
    fn accepts_patches(&self) -> bool {
        false
    }

    /// When a full sync may go in parts of about this many endpoints (upstreams first,
    /// routes last), so that neither memory nor a request grows with the world. `None`:
    /// one batch, for adapters whose LB pays per batch (a reload, a re-provisioning).
    fn full_sync_part(&self) -> Option<usize> {
        None
    }

    /// Whether the LB itself refuses a batch with an older epoch than one it accepted
    /// (the LB contract does; HAProxy keeps no epoch, so only its adapter's memory
    /// does). Leader election relies on it to let a cut-off leader keep leading.
    fn fences(&self) -> bool {
        false
    }

    /// Whether the LB serves Gateway API rules (contract version 2). One that does
    /// not leaves hosts with rules out (`without_rules`), and the routes say so.
    fn serves_rules(&self) -> bool {
        false
    }
}

/// Applies a batch's upstream changes to what an adapter applied before (`held`):
/// removals, whole upserts, then patches (which must fit the held version, as the
/// contract says). For adapters that mirror their LB's state.
pub(crate) fn next_upstreams(
    held: &std::collections::BTreeMap<UpstreamKey, Upstream>,
    batch: &Batch,
) -> Result<std::collections::BTreeMap<UpstreamKey, Upstream>, LbError> {
    let mut ups = held.clone();
    for k in &batch.remove_upstreams {
        ups.remove(k);
    }
    for u in &batch.upsert_upstreams {
        ups.insert(u.key.clone(), u.clone());
    }
    for patch in &batch.patch_upstreams {
        let whole = ups
            .get(&patch.key)
            .ok_or_else(|| {
                LbError::Rejected(format!(
                    "patch for upstream {}, which is not held",
                    patch.key
                ))
            })?
            .patched(patch)
            .map_err(|e| LbError::Rejected(e.to_string()))?;
        ups.insert(patch.key.clone(), whole);
    }
    Ok(ups)
}
