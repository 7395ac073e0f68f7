//! The proxy's live state: one [`ArcSwap`] holding a whole [`Snapshot`] (routes,
//! upstreams, certificates, generation), and the single writer that applies batches.
//!
//! Owns: validating a [`Batch`] all-or-nothing (patches are applied to the held
//! upstreams first, then checked like whole upstreams), the fencing epoch, building the next
//! snapshot off the request path and publishing it with one `store`. An endpoint change
//! swaps one upstream's pool in a persistent map: it never recompiles the route table or
//! the certificates. Must never publish a half-applied batch, and never hold a lock that
//! a request needs.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::balancer::{EndpointLive, Pool};
use super::owners::{self, Owners};
use super::persist::Saved;
use super::router::Router;
use super::tls::{self, CertStore};
use podgate_core::model::{
    Batch, CertificateInfo, HealthCheck, LbState, StateSummary, Upstream, UpstreamKey,
};

/// Why a batch was refused. Nothing changed in either case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The batch's epoch is older than one already accepted: the pusher was deposed.
    #[error("stale epoch {got}: epoch {seen} was already accepted")]
    StaleEpoch { got: u64, seen: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// Everything a request or a handshake needs, consistent with itself.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) router: Arc<Router>,
    pub(crate) upstreams: imbl::HashMap<UpstreamKey, Arc<Pool>>,
    pub(crate) certs: Arc<CertStore>,
    pub(crate) generation: u64,
    pub(crate) epoch: u64,
    /// Who registered what; see `owners`.
    pub(crate) owners: Arc<Owners>,
    /// Endpoints over all upstreams, kept up to date by `apply` (for the metrics).
    pub(crate) endpoints: usize,
    /// Whether this is a full state: a full sync completed (`Batch::complete`) or one
    /// was restored from the state file. `/readyz` answers 200 only then.
    pub(crate) complete: bool,
}

impl Snapshot {
    fn empty() -> Self {
        Self {
            router: Arc::new(Router::default()),
            upstreams: imbl::HashMap::new(),
            certs: Arc::new(CertStore::default()),
            generation: 0,
            epoch: 0,
            owners: Arc::default(),
            endpoints: 0,
            complete: false,
        }
    }
}

/// The live state and its one writer.
#[derive(Debug)]
pub(crate) struct Store {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
    instance: String,
    /// The generation of every published snapshot, for whoever follows the state (the
    /// state file's writer, the health checks): each has its own receiver, none misses
    /// a change.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new() -> Self {
        let instance = format!("{:016x}", rand::random::<u64>());
        Self {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            writer: Mutex::new(()),
            instance,
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Follows the published snapshots: `changed()` wakes after each.
    pub(crate) fn follow(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Everything held, per owner, with certificate keys: what the state file keeps.
    pub(crate) fn saved(&self) -> Saved {
        let snap = self.load_full();
        let owners = snap
            .owners
            .parts()
            .into_iter()
            .map(|part| Batch {
                epoch: part.epoch,
                owner: (!part.owner.is_empty()).then(|| part.owner.to_string()),
                upsert_upstreams: part
                    .upstreams
                    .iter()
                    .filter_map(|k| snap.upstreams.get(k).map(|p| p.spec().clone()))
                    .collect(),
                routes: part.routes.map(|t| (*t).clone()),
                upsert_certificates: part
                    .certificates
                    .iter()
                    .filter_map(|id| snap.certs.get(id).map(|e| e.source.clone()))
                    .collect(),
                ..Batch::default()
            })
            .collect();
        Saved::new(snap.generation, snap.complete, owners)
    }

    /// Replays a saved state into this (empty) store: every owner's batch is checked
    /// like a pushed one. On a refusal the store stays empty.
    pub(crate) fn restore(&self, saved: Saved) -> Result<(), ApplyError> {
        for batch in saved.owners {
            if let Err(e) = self.apply(batch) {
                self.current.store(Arc::new(Snapshot::empty()));
                return Err(e);
            }
        }
        let _writer = self.writer.lock();
        let cur = self.current.load_full();
        self.current.store(Arc::new(Snapshot {
            router: Arc::clone(&cur.router),
            upstreams: cur.upstreams.clone(),
            certs: Arc::clone(&cur.certs),
            generation: saved.generation.max(cur.generation),
            epoch: cur.epoch,
            owners: Arc::clone(&cur.owners),
            endpoints: cur.endpoints,
            complete: saved.complete,
        }));
        Ok(())
    }

    /// The current snapshot; one lock-free load per request.
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub(crate) fn summary(&self) -> StateSummary {
        let snap = self.load();
        StateSummary {
            instance: self.instance.clone(),
            generation: snap.generation,
            epoch: snap.epoch,
        }
    }

    /// Validates and applies one batch atomically.
    pub(crate) fn apply(&self, mut batch: Batch) -> Result<StateSummary, ApplyError> {
        let _writer = self.writer.lock();
        let cur = self.current.load_full();
        // Fencing is per owner: another controller's epoch does not depose this one.
        let seen = cur.owners.epoch(owners::owner_of(&batch));
        if batch.epoch < seen {
            return Err(ApplyError::StaleEpoch {
                got: batch.epoch,
                seen,
            });
        }
        // Patches become whole upstreams first; everything after sees only upserts.
        for patch in std::mem::take(&mut batch.patch_upstreams) {
            let held = cur.upstreams.get(&patch.key).ok_or_else(|| {
                ApplyError::Invalid(format!(
                    "patch for upstream {}, which this LB does not hold (send it whole)",
                    patch.key
                ))
            })?;
            let whole = held
                .spec()
                .patched(&patch)
                .map_err(|e| ApplyError::Invalid(e.to_string()))?;
            batch.upsert_upstreams.push(whole);
        }
        validate_upstreams(&batch)?;
        if let Some(table) = &batch.routes {
            super::rules::check(table).map_err(ApplyError::Invalid)?;
        }
        cur.owners.check(&batch)?;
        let mut certs = Vec::with_capacity(batch.upsert_certificates.len());
        let mut seen_ids = HashSet::new();
        for c in &batch.upsert_certificates {
            if !seen_ids.insert(c.id.as_str()) {
                return Err(ApplyError::Invalid(format!(
                    "certificate {} appears twice in upsert_certificates",
                    c.id
                )));
            }
            if batch.remove_certificates.contains(&c.id) {
                return Err(ApplyError::Invalid(format!(
                    "certificate {} is both upserted and removed",
                    c.id
                )));
            }
            let entry = tls::parse(c).map_err(|e| ApplyError::Invalid(e.to_string()))?;
            certs.push((c.id.clone(), entry));
        }

        // Everything is valid: build the next snapshot. Nothing below can fail.
        let mut owners = (*cur.owners).clone();
        let routes = owners.apply(&mut batch);
        let mut upstreams = cur.upstreams.clone();
        let mut endpoints = cur.endpoints;
        for key in &batch.remove_upstreams {
            if let Some(gone) = upstreams.remove(key) {
                endpoints = endpoints.saturating_sub(gone.spec().endpoints.len());
            }
        }
        for u in batch.upsert_upstreams {
            let previous = upstreams.get(&u.key).cloned();
            let key = u.key.clone();
            endpoints += u.endpoints.len();
            if let Some(previous) = &previous {
                endpoints = endpoints.saturating_sub(previous.spec().endpoints.len());
            }
            upstreams.insert(key, Arc::new(Pool::new(u, previous.as_deref())));
        }
        let router = match routes {
            Some(table) => Arc::new(Router::compile(table)),
            None => Arc::clone(&cur.router),
        };
        let certs = if certs.is_empty() && batch.remove_certificates.is_empty() {
            Arc::clone(&cur.certs)
        } else {
            Arc::new(cur.certs.with_changes(certs, &batch.remove_certificates))
        };
        let next = Snapshot {
            router,
            upstreams,
            certs,
            generation: cur.generation + 1,
            epoch: batch.epoch.max(cur.epoch),
            owners: Arc::new(owners),
            endpoints,
            complete: cur.complete || batch.complete,
        };
        let summary = StateSummary {
            instance: self.instance.clone(),
            generation: next.generation,
            epoch: next.epoch,
        };
        let generation = next.generation;
        self.current.store(Arc::new(next));
        self.changed.send_replace(generation);
        Ok(summary)
    }

    /// Everything held, for `GET /v1/state`. Never includes keys.
    /// With `endpoints: false`, every upstream comes without its endpoints: what a
    /// full sync needs to know what to remove, at a fraction of the size.
    pub(crate) fn state(&self, endpoints: bool) -> LbState {
        let snap = self.load_full();
        let mut upstreams: Vec<Upstream> = snap
            .upstreams
            .values()
            .map(|p| {
                let spec = p.spec();
                if endpoints {
                    spec.clone()
                } else {
                    Upstream {
                        health_check: None,
                        key: spec.key.clone(),
                        shares: spec.shares.clone(),
                        endpoints: Vec::new(),
                    }
                }
            })
            .collect();
        upstreams.sort_by(|a, b| a.key.cmp(&b.key));
        let mut certificates: Vec<CertificateInfo> = snap
            .certs
            .iter()
            .map(|(id, e)| CertificateInfo {
                id: id.clone(),
                names: e.names.clone(),
            })
            .collect();
        certificates.sort_by(|a, b| a.id.cmp(&b.id));
        LbState {
            instance: self.instance.clone(),
            generation: snap.generation,
            epoch: snap.epoch,
            upstreams,
            routes: snap.router.table().clone(),
            certificates,
            owners: snap.owners.states(),
        }
    }

    /// One upstream as the LB holds it.
    #[cfg(test)]
    pub(crate) fn upstream(&self, key: &UpstreamKey) -> Option<Upstream> {
        self.load().upstreams.get(key).map(|p| p.spec().clone())
    }

    /// One upstream with each endpoint's live counters.
    pub(crate) fn upstream_live(&self, key: &UpstreamKey) -> Option<(Upstream, Vec<EndpointLive>)> {
        self.load()
            .upstreams
            .get(key)
            .map(|p| (p.spec().clone(), p.live()))
    }

    /// Whether the live state holds `key`.
    pub(crate) fn holds(&self, key: &UpstreamKey) -> bool {
        self.load().upstreams.contains_key(key)
    }

    fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

fn validate_upstreams(batch: &Batch) -> Result<(), ApplyError> {
    let invalid = |m: String| Err(ApplyError::Invalid(m));
    let mut keys = HashSet::new();
    for u in &batch.upsert_upstreams {
        if !keys.insert(&u.key) {
            return invalid(format!(
                "upstream {} appears twice in upsert_upstreams",
                u.key
            ));
        }
        if batch.remove_upstreams.contains(&u.key) {
            return invalid(format!("upstream {} is both upserted and removed", u.key));
        }
        if let Some(Err(e)) = u.health_check.as_ref().map(HealthCheck::validate) {
            return invalid(format!("upstream {}: health_check: {e}", u.key));
        }
        let mut addrs = HashSet::new();
        for e in &u.endpoints {
            if e.port == 0 {
                return invalid(format!(
                    "upstream {}: endpoint {} has port 0",
                    u.key, e.address
                ));
            }
            if !addrs.insert(SocketAddr::new(e.address, e.port)) {
                return invalid(format!(
                    "upstream {}: endpoint {}:{} appears twice",
                    u.key, e.address, e.port
                ));
            }
        }
        let mut clusters = HashSet::new();
        let mut total = 0u64;
        for (cluster, share) in &u.shares {
            if !clusters.insert(cluster) {
                return invalid(format!(
                    "upstream {}: cluster {cluster} has two shares",
                    u.key
                ));
            }
            total += u64::from(*share);
        }
        if !u.shares.is_empty() && total != 1000 {
            return invalid(format!(
                "upstream {}: shares sum to {total} per mille, not 1000",
                u.key
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{Endpoint, EndpointState, PortRef, RouteTable};

    fn upstream(name: &str, port: u16) -> Upstream {
        Upstream {
            health_check: None,
            key: UpstreamKey::new("ns", name, PortRef::Number(80)),
            shares: vec![],
            endpoints: vec![Endpoint {
                cluster: "idc".into(),
                address: [10, 0, 0, 1].into(),
                port,
                zone: None,
                node: None,
                state: EndpointState::Active,
                weight: 1,
            }],
        }
    }

    #[test]
    fn an_endpoint_change_shares_routes_and_certificates_with_the_previous_snapshot() {
        let store = Store::new();
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("a", 80), upstream("b", 80)],
                routes: Some(RouteTable::default()),
                ..Batch::default()
            })
            .unwrap();
        let before = store.current.load_full();
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("a", 81)],
                ..Batch::default()
            })
            .unwrap();
        let after = store.current.load_full();
        assert!(Arc::ptr_eq(&before.router, &after.router), "routes rebuilt");
        assert!(
            Arc::ptr_eq(&before.certs, &after.certs),
            "certificates rebuilt"
        );
        let b = UpstreamKey::new("ns", "b", PortRef::Number(80));
        assert!(
            Arc::ptr_eq(&before.upstreams[&b], &after.upstreams[&b]),
            "an untouched upstream was rebuilt"
        );
        assert!(
            before.owners.shares_route_tables_with(&after.owners),
            "the owners' route tables were copied"
        );
        assert_eq!(after.generation, 2);
    }

    #[test]
    fn a_refused_batch_publishes_nothing() {
        let store = Store::new();
        store
            .apply(Batch {
                epoch: 3,
                upsert_upstreams: vec![upstream("a", 80)],
                ..Batch::default()
            })
            .unwrap();
        let before = store.current.load_full();
        let refused = [
            Batch {
                epoch: 3,
                upsert_upstreams: vec![upstream("b", 80), upstream("c", 0)],
                remove_upstreams: vec![UpstreamKey::new("ns", "a", PortRef::Number(80))],
                ..Batch::default()
            },
            Batch {
                epoch: 2,
                ..Batch::default()
            },
        ];
        for batch in refused {
            assert!(store.apply(batch).is_err());
            assert!(Arc::ptr_eq(&before, &store.current.load_full()));
        }
        assert_eq!(store.state(true).upstreams.len(), 1);
    }

    #[test]
    fn a_patch_changes_one_endpoint_and_a_patch_that_does_not_fit_changes_nothing() {
        let store = Store::new();
        let mut two = upstream("a", 80);
        let mut second = two.endpoints[0].clone();
        second.address = [10, 0, 0, 2].into();
        two.endpoints.push(second);
        store
            .apply(Batch {
                upsert_upstreams: vec![two.clone()],
                ..Batch::default()
            })
            .unwrap();
        let mut drained = two.clone();
        drained.endpoints[1].state = EndpointState::Draining;
        drained.endpoints[1].weight = 0;
        drained.endpoints[0].weight = 2;
        let patch = podgate_core::model::UpstreamPatch::between(&two, &drained).unwrap();
        store
            .apply(Batch {
                patch_upstreams: vec![patch.clone()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.upstream(&two.key), Some(drained));

        let before = store.current.load_full();
        let unknown = podgate_core::model::UpstreamPatch {
            key: UpstreamKey::new("ns", "zzz", PortRef::Number(80)),
            ..patch.clone()
        };
        let mut stale = patch;
        stale.remove_endpoints = vec!["10.9.9.9:80".parse().unwrap()];
        for p in [unknown, stale] {
            let err = store
                .apply(Batch {
                    patch_upstreams: vec![p],
                    ..Batch::default()
                })
                .unwrap_err();
            assert!(matches!(err, ApplyError::Invalid(_)), "{err}");
            assert!(Arc::ptr_eq(&before, &store.current.load_full()));
        }
    }
}
