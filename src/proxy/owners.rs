//! Ownership in the proxy's state: which controller (owner) registered each upstream and
//! certificate, one route table and one fencing epoch per owner.
//!
//! Owns: the rules that let several controllers share one proxy — an owner may upsert
//! only what is unowned or its own (taking it over), its removals of another owner's items are ignored,
//! its route table replaces only its own, and a deposed replica is fenced only by the
//! epochs of its own owner. Must never let one owner's batch remove or replace what
//! another owner registered. The anonymous owner (`""`, no `owner` in the batch) is an
//! owner like the others, so a single controller behaves as before.

use std::collections::BTreeMap;
use std::sync::Arc;

use podgate_core::model::{Batch, HostPattern, OwnerState, RouteTable, UpstreamKey};

use super::state::ApplyError;

/// Who holds what. Cloned for every batch, so cheap to clone: a persistent map per
/// upstream, route tables behind `Arc` (an endpoint change must not copy 10,000 hosts).
#[derive(Clone, Debug, Default)]
pub(crate) struct Owners {
    upstreams: imbl::HashMap<UpstreamKey, Arc<str>>,
    certificates: BTreeMap<String, Arc<str>>,
    routes: BTreeMap<Arc<str>, Arc<RouteTable>>,
    epochs: BTreeMap<Arc<str>, u64>,
}

/// What one owner holds (see [`Owners::parts`]).
pub(crate) struct OwnerPart {
    pub(crate) owner: Arc<str>,
    pub(crate) epoch: u64,
    pub(crate) routes: Option<Arc<RouteTable>>,
    pub(crate) upstreams: Vec<UpstreamKey>,
    pub(crate) certificates: Vec<String>,
}

/// The owner a batch speaks for.
pub(crate) fn owner_of(batch: &Batch) -> &str {
    batch.owner.as_deref().unwrap_or("")
}

impl Owners {
    /// Highest epoch accepted from `owner`.
    pub(crate) fn epoch(&self, owner: &str) -> u64 {
        self.epochs.get(owner).copied().unwrap_or(0)
    }

    /// Refuses a batch that upserts another owner's upstream or certificate.
    pub(crate) fn check(&self, batch: &Batch) -> Result<(), ApplyError> {
        let owner = owner_of(batch);
        // Unowned items (pushed without an owner) may be taken over: that is how a
        // controller that starts naming itself keeps what it registered before.
        let foreign =
            |holder: Option<&Arc<str>>| holder.is_some_and(|h| !h.is_empty() && &**h != owner);
        for u in &batch.upsert_upstreams {
            if foreign(self.upstreams.get(&u.key)) {
                return Err(ApplyError::Invalid(format!(
                    "upstream {} is registered by another owner than {owner:?}",
                    u.key
                )));
            }
        }
        for c in &batch.upsert_certificates {
            if foreign(self.certificates.get(&c.id)) {
                return Err(ApplyError::Invalid(format!(
                    "certificate {} is registered by another owner than {owner:?}",
                    c.id
                )));
            }
        }
        Ok(())
    }

    /// Drops from `batch` the removals of items another owner holds (they are not this
    /// owner's to remove), records what it upserts and removes, its epoch and its route
    /// table. Returns the merged route table when the batch replaced this owner's.
    /// Call only after [`Self::check`] accepted the batch.
    pub(crate) fn apply(&mut self, batch: &mut Batch) -> Option<RouteTable> {
        let owner: Arc<str> = Arc::from(owner_of(batch));
        let mine = |holder: Option<&Arc<str>>| holder.is_none_or(|h| *h == owner);
        batch
            .remove_upstreams
            .retain(|k| mine(self.upstreams.get(k)));
        batch
            .remove_certificates
            .retain(|id| mine(self.certificates.get(id)));
        for key in &batch.remove_upstreams {
            self.upstreams.remove(key);
        }
        for id in &batch.remove_certificates {
            self.certificates.remove(id);
        }
        for u in &batch.upsert_upstreams {
            self.upstreams.insert(u.key.clone(), owner.clone());
        }
        for c in &batch.upsert_certificates {
            self.certificates.insert(c.id.clone(), owner.clone());
        }
        let epoch = self.epochs.entry(owner.clone()).or_default();
        *epoch = (*epoch).max(batch.epoch);
        let table = batch.routes.take()?;
        self.routes.insert(owner, Arc::new(table));
        Some(self.merged_routes())
    }

    /// Every owner's route table in one: owners in name order, the first to claim a
    /// host, the host-less rules or the catch-all keeps it.
    fn merged_routes(&self) -> RouteTable {
        let mut merged = RouteTable::default();
        for table in self.routes.values() {
            for (host, vhost) in &table.hosts {
                let host: &HostPattern = host;
                merged
                    .hosts
                    .entry(host.clone())
                    .or_insert_with(|| vhost.clone());
            }
            if merged.any_host.is_none() {
                merged.any_host.clone_from(&table.any_host);
            }
            if merged.default_backend.is_none() {
                merged.default_backend.clone_from(&table.default_backend);
            }
        }
        merged
    }

    /// Everything each owner holds, the anonymous one included, in owner name order:
    /// what the state file replays.
    pub(crate) fn parts(&self) -> Vec<OwnerPart> {
        let mut out: BTreeMap<Arc<str>, OwnerPart> = BTreeMap::new();
        for owner in self.epochs.keys().chain(self.routes.keys()) {
            out.entry(owner.clone()).or_insert_with(|| self.part(owner));
        }
        for (key, owner) in &self.upstreams {
            out.entry(owner.clone())
                .or_insert_with(|| self.part(owner))
                .upstreams
                .push(key.clone());
        }
        for (id, owner) in &self.certificates {
            out.entry(owner.clone())
                .or_insert_with(|| self.part(owner))
                .certificates
                .push(id.clone());
        }
        out.into_values().collect()
    }

    fn part(&self, owner: &Arc<str>) -> OwnerPart {
        OwnerPart {
            owner: owner.clone(),
            epoch: self.epoch(owner),
            routes: self.routes.get(owner).cloned(),
            upstreams: Vec::new(),
            certificates: Vec::new(),
        }
    }

    /// Whether both hold the very same route tables (not copies).
    #[cfg(test)]
    pub(crate) fn shares_route_tables_with(&self, other: &Self) -> bool {
        self.routes.len() == other.routes.len()
            && self
                .routes
                .iter()
                .zip(&other.routes)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }

    /// What each named owner holds, for `GET /v1/state`; the anonymous owner is left
    /// out (its items are the unlisted ones).
    pub(crate) fn states(&self) -> Vec<OwnerState> {
        let mut out: BTreeMap<Arc<str>, OwnerState> = BTreeMap::new();
        for owner in self.epochs.keys() {
            self.entry(&mut out, owner);
        }
        for (key, owner) in &self.upstreams {
            if let Some(state) = self.entry(&mut out, owner) {
                state.upstreams.push(key.clone());
            }
        }
        for (id, owner) in &self.certificates {
            if let Some(state) = self.entry(&mut out, owner) {
                state.certificates.push(id.clone());
            }
        }
        let mut states: Vec<OwnerState> = out.into_values().collect();
        for s in &mut states {
            s.upstreams.sort();
        }
        states
    }

    fn entry<'a>(
        &self,
        out: &'a mut BTreeMap<Arc<str>, OwnerState>,
        owner: &Arc<str>,
    ) -> Option<&'a mut OwnerState> {
        if owner.is_empty() {
            return None;
        }
        Some(out.entry(owner.clone()).or_insert_with(|| OwnerState {
            owner: owner.to_string(),
            epoch: self.epoch(owner),
            ..OwnerState::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{ApplyError, Store};
    use podgate_core::model::{
        Batch, Endpoint, EndpointState, HostPattern, PortRef, RouteTable, Upstream, UpstreamKey,
        VirtualHost,
    };

    fn key(name: &str) -> UpstreamKey {
        UpstreamKey::new("ns", name, PortRef::Number(80))
    }

    fn upstream(name: &str) -> Upstream {
        Upstream {
            health_check: None,
            key: key(name),
            shares: vec![],
            endpoints: vec![Endpoint {
                cluster: "idc".into(),
                address: [10, 0, 0, 1].into(),
                port: 8080,
                zone: None,
                node: None,
                state: EndpointState::Active,
                weight: 1,
            }],
        }
    }

    /// `host` → upstream `name`.
    fn routes(hosts: &[(&str, &str)]) -> RouteTable {
        let mut table = RouteTable::default();
        for (host, name) in hosts {
            table.hosts.insert(
                HostPattern::parse(host).unwrap(),
                VirtualHost {
                    default_backend: Some(key(name)),
                    ..VirtualHost::default()
                },
            );
        }
        table
    }

    fn batch(owner: &str, epoch: u64) -> Batch {
        Batch {
            epoch,
            owner: (!owner.is_empty()).then(|| owner.to_owned()),
            ..Batch::default()
        }
    }

    fn served(store: &Store, host: &str) -> Option<String> {
        let state = store.state(true);
        state.routes.route(host, "/").map(|k| k.service.to_string())
    }

    /// Owner `a` (epoch 5) holds upstream `a` and host a.com; owner `b` (epoch 1)
    /// holds `b` and b.com.
    fn shared() -> Store {
        let store = Store::new();
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("a")],
                routes: Some(routes(&[("a.com", "a")])),
                ..batch("a", 5)
            })
            .unwrap();
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("b")],
                routes: Some(routes(&[("b.com", "b")])),
                ..batch("b", 1)
            })
            .unwrap();
        store
    }

    #[test]
    fn fencing_and_route_tables_are_per_owner() {
        let store = shared();
        // b's lower epoch was accepted: a's epoch does not depose b.
        assert_eq!(served(&store, "a.com").as_deref(), Some("a"));
        assert_eq!(served(&store, "b.com").as_deref(), Some("b"));
        // a replaces its route table: b's host stays.
        store
            .apply(Batch {
                routes: Some(routes(&[("a2.com", "a")])),
                ..batch("a", 5)
            })
            .unwrap();
        assert_eq!(served(&store, "a.com"), None);
        assert_eq!(served(&store, "b.com").as_deref(), Some("b"));
        // A deposed replica of a is still fenced by a's own epoch.
        let err = store.apply(batch("a", 4)).unwrap_err();
        assert!(matches!(err, ApplyError::StaleEpoch { got: 4, seen: 5 }));
    }

    #[test]
    fn another_owners_items_are_neither_removed_nor_replaced() {
        let store = shared();
        store
            .apply(Batch {
                remove_upstreams: vec![key("a")],
                ..batch("b", 1)
            })
            .unwrap();
        assert_eq!(
            store.state(true).upstreams.len(),
            2,
            "b removed a's upstream"
        );
        let err = store
            .apply(Batch {
                upsert_upstreams: vec![upstream("a")],
                ..batch("b", 1)
            })
            .unwrap_err();
        assert!(err.to_string().contains("another owner"), "{err}");
        // Its own: removed.
        store
            .apply(Batch {
                remove_upstreams: vec![key("b")],
                ..batch("b", 1)
            })
            .unwrap();
        let state = store.state(true);
        assert_eq!(state.upstreams.len(), 1);
        let owners: Vec<(&str, usize)> = state
            .owners
            .iter()
            .map(|o| (o.owner.as_str(), o.upstreams.len()))
            .collect();
        assert_eq!(owners, [("a", 1), ("b", 0)]);
        assert!(state.owns_upstream(Some("a"), &key("a")));
        assert!(!state.owns_upstream(Some("b"), &key("a")));
        assert!(!state.owns_upstream(None, &key("a")));
    }

    #[test]
    fn unowned_items_can_be_taken_over_and_contested_hosts_go_to_the_first_owner() {
        let store = Store::new();
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("old")],
                routes: Some(routes(&[("x.com", "old")])),
                ..batch("", 0)
            })
            .unwrap();
        assert!(store.state(true).owners.is_empty());
        store
            .apply(Batch {
                upsert_upstreams: vec![upstream("old")],
                routes: Some(routes(&[("x.com", "zed")])),
                ..batch("zed", 1)
            })
            .unwrap();
        // "" sorts first: the anonymous table keeps x.com until it lets go.
        assert_eq!(served(&store, "x.com").as_deref(), Some("old"));
        store
            .apply(Batch {
                routes: Some(RouteTable::default()),
                ..batch("", 0)
            })
            .unwrap();
        assert_eq!(served(&store, "x.com").as_deref(), Some("zed"));
        assert_eq!(store.state(true).owners[0].upstreams, [key("old")]);
    }
}
