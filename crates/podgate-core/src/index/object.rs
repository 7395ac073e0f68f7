//! The objects the Index accepts, and what each mutation reports as changed.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::gateway::{Gateway, GatewayClass, HttpRoute, ReferenceGrant};
use crate::model::UpstreamKey;

use super::{Hold, Kind, RouteScope};

/// A Kubernetes object of one of the kinds the Index reads.
#[derive(Clone, Debug)]
pub enum Object {
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Secret(Box<Secret>),
    GatewayClass(Box<GatewayClass>),
    Gateway(Box<Gateway>),
    HttpRoute(Box<HttpRoute>),
    ReferenceGrant(Box<ReferenceGrant>),
    Namespace(Box<Namespace>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Ingress(_) => Kind::Ingress,
            Self::IngressClass(_) => Kind::IngressClass,
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::Secret(_) => Kind::Secret,
            Self::GatewayClass(_) => Kind::GatewayClass,
            Self::Gateway(_) => Kind::Gateway,
            Self::HttpRoute(_) => Kind::HTTPRoute,
            Self::ReferenceGrant(_) => Kind::ReferenceGrant,
            Self::Namespace(_) => Kind::Namespace,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Ingress(o) => &o.metadata,
            Self::IngressClass(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::EndpointSlice(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::GatewayClass(o) => &o.metadata,
            Self::Gateway(o) => &o.metadata,
            Self::HttpRoute(o) => &o.metadata,
            Self::ReferenceGrant(o) => &o.metadata,
            Self::Namespace(o) => &o.metadata,
        }
    }
}

macro_rules! object_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Object {
            fn from(o: $variant) -> Self {
                Self::$variant(Box::new(o))
            }
        }
    )*};
}
object_from!(Ingress, IngressClass, Service, EndpointSlice, Secret);
object_from!(GatewayClass, Gateway, ReferenceGrant, Namespace);

impl From<HttpRoute> for Object {
    fn from(o: HttpRoute) -> Self {
        Self::HttpRoute(Box::new(o))
    }
}

/// Exactly what one mutation changed in the desired state. Empty when nothing did: a
/// relist returning the same objects reports no change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Upstreams whose value changed, appeared or disappeared.
    pub upstreams: BTreeSet<UpstreamKey>,
    /// Route-table entries that changed, appeared or disappeared.
    pub routes: BTreeSet<RouteScope>,
    /// Certificate ids (`namespace/secret`) whose value changed, appeared or disappeared.
    pub certificates: BTreeSet<String>,
    /// Whether the set of diagnostics may have changed.
    pub diagnostics: bool,
    /// Holds (hold-down) this mutation started; the caller releases each one later
    /// with `Index::release_hold`. Not a change of the desired state by itself.
    pub held: BTreeSet<Hold>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty() && self.routes.is_empty() && self.certificates.is_empty()
    }

    pub fn merge(&mut self, other: Self) {
        self.upstreams.extend(other.upstreams);
        self.routes.extend(other.routes);
        self.certificates.extend(other.certificates);
        self.diagnostics |= other.diagnostics;
        self.held.extend(other.held);
    }
}
