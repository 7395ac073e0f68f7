//! Shared set-up for the Index tests: an Index with podgate's IngressClass in the
//! clusters `idc` and `tke`.

use podgate_core::index::{Index, IndexConfig};
use podgate_core::model::{ClusterName, RouteTable};
use podgate_sim::objects::{default_class, ingress_class};

pub(crate) const CONTROLLER: &str = "podgate.io/ingress-controller";

pub(crate) fn idc() -> ClusterName {
    ClusterName::new("idc")
}

pub(crate) fn tke() -> ClusterName {
    ClusterName::new("tke")
}

/// An Index for clusters idc (weight 100) and tke (weight 100), each with podgate's
/// IngressClass `podgate` (the default class) and another controller's class `nginx`.
pub(crate) fn index() -> Index {
    let mut index = Index::new(IndexConfig {
        clusters: vec![(idc(), 100), (tke(), 100)],
        ..IndexConfig::default()
    });
    for c in [idc(), tke()] {
        index.apply(&c, default_class(ingress_class("podgate", CONTROLLER)));
        index.apply(&c, ingress_class("nginx", "k8s.io/ingress-nginx"));
    }
    index
}

/// Which upstream a request goes to, as `ns/svc:port`, or `-` for none.
pub(crate) fn route(table: &RouteTable, host: &str, path: &str) -> String {
    table
        .route(host, path)
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// The diagnostics of one reason, as `namespace/name` of the object.
pub(crate) fn reported(index: &podgate_core::index::Index, reason: &str) -> Vec<String> {
    index
        .diagnostics()
        .into_iter()
        .filter(|r| r.diagnostic.reason == reason)
        .map(|r| format!("{}/{}", r.object.namespace, r.object.name))
        .collect()
}
