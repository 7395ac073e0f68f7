//! The values the rest of podgate speaks: routes, upstreams, endpoints, certificates and
//! the LB contract that carries them.
//!
//! Owns: plain data types with serde, and the pure matching rules (host and path) that
//! every consumer must agree on. Must never do I/O or depend on kube, tokio or hyper.

mod cluster;
mod contract;
mod health;
mod host;
mod patch;
mod path;
mod route;
mod rule;
pub mod shares;
mod tls;
mod upstream;

pub use cluster::ClusterName;
pub use contract::{Batch, CertificateInfo, LbState, OwnerState, StateSummary};
pub use health::{HEALTH_CHECK_ANNOTATION, HealthCheck, HealthCheckError, HealthMethod};
pub use host::{HostError, HostPattern, normalize_request_host};
pub use patch::{PatchError, UpstreamPatch};
pub use path::{PathError, PathKind, PathMatch};
pub use route::{GatewayRuleCheck, Route, RouteExplanation, RouteTable, RuleCheck, VirtualHost};
pub use rule::{
    HeaderEdits, HttpRule, NameValue, PATH_REGEX_MAX_LEN, PathRewrite, Redirect, Rewrite,
    RuleFilter, WeightedBackend, path_regex,
};
pub use shares::{ClusterWeights, WeightsError};
pub use tls::{Certificate, Pem};
pub use upstream::{Endpoint, EndpointState, PortRef, Upstream, UpstreamKey};
