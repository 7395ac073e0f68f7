//! The LB contract: what the controller pushes to a load balancer and what it reads
//! back. The built-in proxy's admin API serves exactly these bodies (see
//! `docs/lb-contract.openapi.yaml`); a company LB can implement the same.

use serde::{Deserialize, Serialize};

use super::{Certificate, RouteTable, Upstream, UpstreamKey, UpstreamPatch};

/// One atomic change. Applied all-or-nothing: a batch that fails validation changes
/// nothing. `epoch` fences deposed controllers: a batch with an epoch older than one the
/// LB has already accepted is refused with 409.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[serde(default)]
    pub epoch: u64,
    /// Who pushes (a controller id, e.g. its `controller_name`). The LB records the
    /// owner of every upstream and certificate it upserts, keeps one route table and one
    /// fencing epoch per owner, refuses upserts of another owner's items, and ignores
    /// removals of them. Absent: the anonymous owner (a single controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Upstreams to create or replace whole (all endpoints).
    #[serde(default)]
    pub upsert_upstreams: Vec<Upstream>,
    #[serde(default)]
    pub remove_upstreams: Vec<UpstreamKey>,
    /// Endpoint-level changes to upstreams the LB holds (see [`UpstreamPatch`]); an LB
    /// that does not hold one, or holds a version the patch does not fit, refuses the
    /// batch (400) and the pusher sends whole upstreams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patch_upstreams: Vec<UpstreamPatch>,
    /// When present, replaces the whole route table.
    #[serde(default)]
    pub routes: Option<RouteTable>,
    #[serde(default)]
    pub upsert_certificates: Vec<Certificate>,
    /// Certificate ids to remove.
    #[serde(default)]
    pub remove_certificates: Vec<String>,
    /// This batch ends a full sync: after it the LB holds everything its owner wants.
    /// The built-in proxy reports ready (`/readyz`) only once it holds such a state
    /// (or restored one from its state file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub complete: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.upsert_upstreams.is_empty()
            && self.remove_upstreams.is_empty()
            && self.patch_upstreams.is_empty()
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
    /// What each named owner registered (see [`Batch::owner`]); items not listed were
    /// pushed without an owner. Empty on LBs that do not record ownership.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerState>,
}

/// The items one owner registered, and its fencing epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerState {
    pub owner: String,
    /// Highest epoch accepted from this owner.
    pub epoch: u64,
    pub upstreams: Vec<UpstreamKey>,
    /// Certificate ids.
    pub certificates: Vec<String>,
}

impl LbState {
    /// Whether `owner` (`None`: the anonymous owner) may remove the upstream `key`:
    /// only what it registered itself.
    pub fn owns_upstream(&self, owner: Option<&str>, key: &UpstreamKey) -> bool {
        let holder = self
            .owners
            .iter()
            .find(|o| o.upstreams.contains(key))
            .map(|o| o.owner.as_str());
        holder == owner
    }

    /// Like [`Self::owns_upstream`], for a certificate id.
    pub fn owns_certificate(&self, owner: Option<&str>, id: &str) -> bool {
        let holder = self
            .owners
            .iter()
            .find(|o| o.certificates.iter().any(|c| c == id))
            .map(|o| o.owner.as_str());
        holder == owner
    }
}

/// The answer to a batch: where the LB is now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSummary {
    pub instance: String,
    pub generation: u64,
    pub epoch: u64,
}
