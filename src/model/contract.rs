//! The LB contract: what the controller pushes to a load balancer and what it reads
//! back. The built-in proxy's admin API serves exactly these bodies (see
//! `docs/lb-contract.openapi.yaml`); a company LB can implement the same.

use serde::{Deserialize, Serialize};

use super::{Certificate, RouteTable, Upstream, UpstreamKey};

/// One atomic change. Applied all-or-nothing: a batch that fails validation changes
/// nothing. `epoch` fences deposed controllers: a batch with an epoch older than one the
/// LB has already accepted is refused with 409.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[serde(default)]
    pub epoch: u64,
    /// Upstreams to create or replace whole (all endpoints).
    #[serde(default)]
    pub upsert_upstreams: Vec<Upstream>,
    #[serde(default)]
    pub remove_upstreams: Vec<UpstreamKey>,
    /// When present, replaces the whole route table.
    #[serde(default)]
    pub routes: Option<RouteTable>,
    #[serde(default)]
    pub upsert_certificates: Vec<Certificate>,
    /// Certificate ids to remove.
    #[serde(default)]
    pub remove_certificates: Vec<String>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.upsert_upstreams.is_empty()
            && self.remove_upstreams.is_empty()
            && self.routes.is_none()
            && self.upsert_certificates.is_empty()
            && self.remove_certificates.is_empty()
    }
}

/// A certificate as the LB reports it: never the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub id: String,
    /// DNS names found in the certificate.
    pub names: Vec<String>,
}

/// `GET /v1/state`: everything the LB holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbState {
    /// Random per process start: a change means the LB restarted and needs a full sync.
    pub instance: String,
    /// Increases by one for every accepted batch.
    pub generation: u64,
    /// Highest epoch accepted so far.
    pub epoch: u64,
    pub upstreams: Vec<Upstream>,
    pub routes: RouteTable,
    pub certificates: Vec<CertificateInfo>,
}

/// The answer to a batch: where the LB is now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSummary {
    pub instance: String,
    pub generation: u64,
    pub epoch: u64,
}
