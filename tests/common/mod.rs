//! Shared set-up for the Index tests: an Index with podgate's IngressClass in the
//! clusters `idc` and `tke`.
#![allow(dead_code, unreachable_pub)]

use podgate::index::{Index, IndexConfig};
use podgate::model::{ClusterName, RouteTable};
use podgate::objects::{default_class, ingress_class};

pub const CONTROLLER: &str = "podgate.io/ingress-controller";

pub fn idc() -> ClusterName {
    ClusterName::new("idc")
}

pub fn tke() -> ClusterName {
    ClusterName::new("tke")
}

/// An Index for clusters idc (weight 100) and tke (weight 100), each with podgate's
/// IngressClass `podgate` (the default class) and another controller's class `nginx`.
pub fn index() -> Index {
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
pub fn route(table: &RouteTable, host: &str, path: &str) -> String {
    table
        .route(host, path)
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// The diagnostics of one reason, as `namespace/name` of the object.
pub fn reported(index: &podgate::index::Index, reason: &str) -> Vec<String> {
    index
        .diagnostics()
        .into_iter()
        .filter(|r| r.diagnostic.reason == reason)
        .map(|r| format!("{}/{}", r.object.namespace, r.object.name))
        .collect()
}
