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

use crate::model::{Batch, HostPattern, OwnerState, RouteTable, UpstreamKey};

use super::state::ApplyError;

/// Who holds what. Small: one entry per upstream and certificate.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owners {
    upstreams: imbl::HashMap<UpstreamKey, Arc<str>>,
    certificates: BTreeMap<String, Arc<str>>,
    routes: BTreeMap<Arc<str>, RouteTable>,
    epochs: BTreeMap<Arc<str>, u64>,
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
        self.routes.insert(owner, table);
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
