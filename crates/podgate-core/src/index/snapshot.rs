//! A consistent, reference-counted copy of the Index's desired state. Taking one costs
//! a few pointer copies; readers never block the Index.

use std::sync::Arc;

use crate::model::{Certificate, RouteTable, Upstream, UpstreamKey, VirtualHost};

use super::RouteScope;

/// Upstreams by key: a persistent map, so a snapshot shares all unchanged entries.
pub type UpstreamMap = imbl::GenericHashMap<
    UpstreamKey,
    Arc<Upstream>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Increases with every mutation that changed something.
    pub generation: u64,
    pub upstreams: UpstreamMap,
    pub vhosts: imbl::OrdMap<RouteScope, Arc<VirtualHost>>,
    pub certificates: imbl::OrdMap<String, Certificate>,
}

impl Snapshot {
    /// The whole route table, as the LB contract carries it.
    pub fn route_table(&self) -> RouteTable {
        let mut table = RouteTable::default();
        for (scope, vhost) in &self.vhosts {
            match scope {
                RouteScope::Host(h) => {
                    table.hosts.insert(h.clone(), (**vhost).clone());
                }
                RouteScope::AnyHost => table.any_host = Some((**vhost).clone()),
                RouteScope::Default => table.default_backend.clone_from(&vhost.default_backend),
            }
        }
        table
    }

    /// All upstreams, sorted by key.
    pub fn upstream_list(&self) -> Vec<Arc<Upstream>> {
        let mut list: Vec<Arc<Upstream>> = self.upstreams.values().cloned().collect();
        list.sort_by(|a, b| a.key.cmp(&b.key));
        list
    }
}
