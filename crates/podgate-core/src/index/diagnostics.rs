//! Problems the Index found, attached to the object that caused them. The cluster layer
//! turns them into Kubernetes Events; the admin view lists them.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::model::ClusterName;

/// The kinds of object the Index reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    GatewayClass,
    Gateway,
    HTTPRoute,
    ReferenceGrant,
    /// Namespaces, for their labels (`allowedRoutes.namespaces.from: Selector`).
    Namespace,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub cluster: ClusterName,
    pub kind: Kind,
    /// Empty for cluster-scoped kinds.
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}: {} {}", self.cluster, self.kind, self.name)
        } else {
            write!(
                f,
                "{}: {} {}/{}",
                self.cluster, self.kind, self.namespace, self.name
            )
        }
    }
}

/// A Warning about one object. `reason` is a short CamelCase word, as in a Kubernetes
/// Event; `message` is for humans and never contains secret material.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub reason: &'static str,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A diagnostic together with the object it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Report {
    pub object: ObjectRef,
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
}
