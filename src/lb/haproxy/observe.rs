//! `observe` for HAProxy: what the running worker holds, in the LB contract's terms.
//!
//! Owns: reading the maps, backends, podgate servers, certificates and crt-list lines back and naming them with the
//! applied state where HAProxy cannot (cluster names, podgate weights, zones). Must
//! never change anything in HAProxy.

use std::collections::HashMap;

use super::adapter::{HaproxyAdapter, transient};
use super::certs::{own_stem, parse_cert_details};
use super::maps::{MapKind, MapSet, read_map};
use super::names::{WeightScale, cluster_token, decode_key, parse_server_name, server_name};
use super::runtime::escape_arg;
use super::servers::LiveServer;
use crate::lb::LbError;
use podgate_core::model::{
    CertificateInfo, ClusterName, Endpoint, EndpointState, HostPattern, LbState, RouteTable,
    Upstream,
};

impl HaproxyAdapter {
    pub(super) async fn observe_inner(&self) -> Result<LbState, LbError> {
        let m = self.mirror.lock().await;
        let pid = self.rt.worker_pid().await.map_err(transient)?;
        let mut maps = MapSet::default();
        for kind in MapKind::ALL {
            let file = self.settings.config_dir.join(kind.file_name());
            // `None`: the worker runs without podgate's file (HAProxy started with an
            // empty `podgate.cfg`), so podgate registered nothing in it yet. That is
            // an empty state, not a failure: the next apply renders the file.
            let entries = read_map(&self.rt, &file).await.map_err(transient)?;
            maps.0.insert(kind, entries.unwrap_or_default());
        }
        let live = self.live_servers().await?;
        let known: HashMap<String, &Endpoint> = m
            .upstreams
            .values()
            .flat_map(|u| &u.endpoints)
            .map(|e| (server_name(e), e))
            .collect();
        let clusters: HashMap<String, ClusterName> = known
            .values()
            .map(|e| (cluster_token(&e.cluster), e.cluster.clone()))
            .collect();
        let mut upstreams = Vec::new();
        for (be, enc) in maps.get(MapKind::Upstreams) {
            let (Some(servers), Some(key)) = (live.get(be), decode_key(enc)) else {
                continue;
            };
            let desired = m.upstreams.get(&key);
            let scale = WeightScale::for_weights(
                desired
                    .into_iter()
                    .flat_map(|u| &u.endpoints)
                    .map(|e| e.weight),
            );
            let mut endpoints: Vec<Endpoint> = servers
                .iter()
                .filter(|s| !s.in_maint())
                .filter_map(|s| observed_endpoint(s, known.get(&s.name).copied(), &clusters, scale))
                .collect();
            endpoints.sort_by(|a, b| {
                (&a.cluster, a.address, a.port).cmp(&(&b.cluster, b.address, b.port))
            });
            upstreams.push(Upstream {
                health_check: None,
                shares: desired.map(|u| u.shares.clone()).unwrap_or_default(),
                key,
                endpoints,
            });
        }
        upstreams.sort_by(|a, b| a.key.cmp(&b.key));
        let mut routes = maps.to_routes();
        let certificates = self.observe_certs(&maps, &mut routes).await?;
        let summary = m.summary(pid);
        Ok(LbState {
            instance: summary.instance,
            generation: summary.generation,
            epoch: summary.epoch,
            upstreams,
            routes,
            certificates,
            // The adapter's name prefix marks what podgate owns; nothing else is read.
            owners: Vec::new(),
        })
    }
}

impl HaproxyAdapter {
    /// podgate's certificates in the worker's store, named through `certificates.map`,
    /// and the hosts the crt-list serves each for (`VirtualHost.tls` of `routes`).
    async fn observe_certs(
        &self,
        maps: &MapSet,
        routes: &mut RouteTable,
    ) -> Result<Vec<CertificateInfo>, LbError> {
        let dir = &self.settings.config_dir;
        let ids = maps.certificate_ids();
        let id_of = |file: &str| own_stem(&self.names, dir, file).and_then(|s| ids.get(s));
        let (files, _) = self.live_certs().await?;
        let mut out = Vec::new();
        for file in &files {
            let Some(id) = id_of(file) else { continue };
            let answer = self
                .rt
                .raw(&format!("show ssl cert {}", escape_arg(file)))
                .await
                .map_err(transient)?;
            out.push(CertificateInfo {
                id: id.clone(),
                names: parse_cert_details(&answer).1,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        if self.crt_list_loaded().await? {
            for line in self.live_lines().await? {
                let Some(id) = id_of(&line.file) else {
                    continue;
                };
                for host in &line.filters {
                    let vhost = HostPattern::parse(host)
                        .ok()
                        .and_then(|h| routes.hosts.get_mut(&h));
                    if let Some(v) = vhost {
                        v.tls = Some(id.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A live server as a podgate endpoint. HAProxy knows neither podgate weights nor
/// zones: when the live weight is what podgate would have set for the applied weight,
/// the applied weight is reported, otherwise the live HAProxy weight (which then
/// differs, so drift detection repairs it).
fn observed_endpoint(
    s: &LiveServer,
    applied: Option<&Endpoint>,
    clusters: &HashMap<String, ClusterName>,
    scale: WeightScale,
) -> Option<Endpoint> {
    let (token, address, port) = parse_server_name(&s.name)?;
    let state = if s.draining() {
        EndpointState::Draining
    } else {
        EndpointState::Active
    };
    let weight = match (state, applied) {
        (EndpointState::Draining, _) => 0,
        (EndpointState::Active, Some(a))
            if a.state == EndpointState::Active && scale.to_haproxy(a.weight) == s.weight =>
        {
            a.weight
        }
        (EndpointState::Active, _) => s.weight,
    };
    Some(Endpoint {
        cluster: clusters
            .get(token)
            .cloned()
            .unwrap_or_else(|| ClusterName::new(token)),
        address,
        port,
        zone: applied.and_then(|a| a.zone.clone()),
        node: applied.and_then(|a| a.node.clone()),
        state,
        weight,
    })
}
