//! An object translated to its compact record but not yet applied ([`Prepared`]): what a
//! watcher buffers during a relist instead of the whole Kubernetes object, so that a
//! list of 15,000 EndpointSlices costs their records, not their JSON-shaped structs.

use std::sync::Arc;

use super::Kind;
use super::records::{
    ClassRecord, IngressRecord, ObjectKey, SecretRecord, ServiceRecord, SliceRecord,
};

/// See the module docs. Made by [`Index::prepare`](super::Index::prepare), consumed by
/// [`Index::apply_prepared`](super::Index::apply_prepared) and
/// [`Index::reset_prepared`](super::Index::reset_prepared).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub(crate) kind: Kind,
    pub(crate) key: ObjectKey,
    /// `None`: an object the Index ignores (an FQDN slice, a slice without a Service).
    pub(crate) record: Option<Record>,
}

impl Prepared {
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Record {
    Ingress(IngressRecord),
    Class(ClassRecord),
    Service(ServiceRecord),
    Slice(SliceRecord),
    Secret(SecretRecord),
    /// Gateway API objects are kept as read (their types hold only what podgate acts
    /// on; `metadata` is cut to what resolution reads).
    GatewayClass(Arc<crate::gateway::GatewayClass>),
    Gateway(Arc<crate::gateway::Gateway>),
    HttpRoute(Arc<crate::gateway::HttpRoute>),
    ReferenceGrant(Arc<crate::gateway::ReferenceGrant>),
    /// A Namespace's labels.
    Namespace(Arc<crate::gateway::Labels>),
}
