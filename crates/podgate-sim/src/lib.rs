//! podgate-sim: a simulated Kubernetes API server — a test double, not a Kubernetes.
//!
//! One `SimCluster` per simulated cluster, listening on `127.0.0.1` over plain HTTP,
//! answering the wire protocol of a real kube-apiserver 1.26 closely enough that the
//! real `kube` client and `kube::runtime::watcher` work against it unchanged (the
//! recordings in `tests/fixtures/k8s-wire/` are the reference). Used by podgate's tests
//! and by `podgate demo`; never by the controller against real clusters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), podgate_sim::SimError> {
//! use k8s_openapi::api::discovery::v1::EndpointSlice;
//! use podgate_sim::{Gvr, SimCluster, SimOptions};
//!
//! // Simulated pods live on 127.1.x.y, which a real API server would refuse.
//! let opts = SimOptions { allow_loopback_endpoints: true, ..SimOptions::default() };
//! let idc = SimCluster::start("idc", opts).await?;
//! idc.apply_json(serde_json::json!({
//!     "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
//!     "metadata": { "name": "web-a", "namespace": "default",
//!                   "labels": { "kubernetes.io/service-name": "web" } },
//!     "addressType": "IPv4",
//!     "endpoints": [{ "addresses": ["127.1.0.1"], "conditions": { "ready": true } }],
//!     "ports": [{ "name": "http", "port": 8080 }]
//! }))?;
//! let client = idc.client()?; // or idc.write_kubeconfig(path) for `podgate controller`
//! let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "default");
//! idc.expire_history(); // watchers get 410 and relist
//! idc.stop().await; // the "cluster" goes away; objects are kept
//! idc.restart().await?; // back on the same address
//! idc.delete(&Gvr::of::<EndpointSlice>(), Some("default"), "web-a")?;
//! # Ok(()) }
//! ```
//!
//! The folder reads like the request path: `server` (HTTP, routing via `route`,
//! request faults from `faults`) → `list` / `watch` / `write` / `delete` (+ `validate`
//! with `schema` and `cel`, `selector`, `strategic`) → `store` (objects, versions, bounded history); `discovery` and
//! `kubeconfig` serve clients; `handle` is the public handle; `status` the error
//! bodies; `resources` the kinds. `objects` holds builders for the Kubernetes objects
//! tests and the demo put into it (`slice("shop", "web-1", "web").ready("10.0.0.1")`).
//!
//! Known differences from a real API server: no authentication or authorization, no
//! managedFields, no grace periods (deletes without finalizers are immediate; a
//! Namespace and its contents go at once), no protobuf, no `dryRun` (refused with
//! 400), no checks on Service addresses chosen by clients, strategic merge patches know
//! only the merge keys in `strategic` (other lists are replaced), apply patches are
//! treated as JSON merge patches, CRDs registered from their YAML
//! (`SimCluster::register_crds`) get their schema's defaults, `maxItems` and CEL rules
//! but no other OpenAPI checks (`schema`, `cel`; no cost budget, and a CEL rule the sim
//! cannot evaluate is skipped), discovery lacks `singularName`/`shortNames`/`categories`, no kubelet (nothing computes a Pod's `Ready`; nor
//! does a real API server, k8s-wire 18b), core and events.k8s.io Events are stored
//! apart, validation covers only what podgate depends on (see `validate`), and
//! bookmarks come on a fixed interval (plus one just before a watch's deadline).

mod alloc;
mod cel;
mod cel_value;
mod delete;
mod discovery;
mod faults;
mod handle;
mod kubeconfig;
mod list;
mod meta;
pub mod objects;
mod resources;
mod route;
mod schema;
mod selector;
mod server;
mod state;
mod status;
mod store;
mod strategic;
mod validate;
mod watch;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use handle::SimCluster;
pub use resources::{Gvr, KindOrigin, ResourceKind};
pub use state::SimStats;
pub use status::ApiError;
pub use tempfile::TempDir;

/// How a simulated cluster behaves. `SimOptions::default()` is the strict one.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Accept EndpointSlice addresses in 127.0.0.0/8 and ::1. A real API server refuses
    /// them with 422 "may not be in the loopback range"; the demo and tests need them
    /// because their simulated pods listen on 127.1.x.y. Default: false (refuse).
    pub allow_loopback_endpoints: bool,
    /// How many changes the event history keeps per kind. A watch or exact
    /// list at a version older than the history gets 410 Expired. Default: 1000.
    pub history: usize,
    /// Where to listen; must be a loopback address. Default: `127.0.0.1:0`.
    pub addr: Option<SocketAddr>,
    /// How often a watch that asked for bookmarks gets one. Default: 60 s, like the
    /// real server; clients must not depend on them.
    pub bookmark_interval: Duration,
    /// Requests must carry `Authorization: Bearer <token>` (a ServiceAccount token);
    /// others get 401 Unauthorized. Default: none (every request is served, as with
    /// `kubectl proxy`).
    pub bearer_token: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            allow_loopback_endpoints: false,
            history: 1000,
            addr: None,
            bookmark_interval: Duration::from_mins(1),
            bearer_token: None,
        }
    }
}

/// Why a simulated cluster could not do what its handle was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The sim only listens on loopback addresses.
    #[error("{0} is not a loopback address; the simulated API server listens on 127.0.0.0/8 only")]
    NotLoopback(SocketAddr),
    /// The API server refused the write, exactly as it would over HTTP.
    #[error("refused: {0}")]
    Api(#[from] ApiError),
    /// No kind registered under this apiVersion/kind or group/version/resource.
    #[error("unknown kind {0}; register it with SimCluster::register")]
    UnknownKind(String),
    /// The kube client could not be built.
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    /// The kubeconfig could not be built.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A directory for a simulated world's files (kubeconfigs, tokens, configuration),
/// removed with everything in it when the returned value is dropped.
pub fn scratch_dir() -> std::io::Result<TempDir> {
    tempfile::Builder::new().prefix("podgate-sim-").tempdir()
}

/// The Gateway API v1.6.1 standard-channel CRDs (GatewayClass, Gateway, HTTPRoute,
/// ReferenceGrant) as one multi-document YAML, for [`SimCluster::register_crds`]: what
/// a cluster admin installs, embedded so the demo can install them too.
pub const GATEWAY_API_CRDS: &str = concat!(
    include_str!("../tests/fixtures/gateway-api/gatewayclasses.yaml"),
    "\n---\n",
    include_str!("../tests/fixtures/gateway-api/gateways.yaml"),
    "\n---\n",
    include_str!("../tests/fixtures/gateway-api/httproutes.yaml"),
    "\n---\n",
    include_str!("../tests/fixtures/gateway-api/referencegrants.yaml"),
);
