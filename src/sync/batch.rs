//! Desired state + what changed → the batch to push. Pure.

use std::collections::BTreeSet;

use crate::index::{Snapshot, UpstreamMap};
use crate::model::{Batch, LbState, UpstreamKey, UpstreamPatch};

use super::desired::Work;

/// The batch for `work`. For a full sync, `observed` is what the LB holds now: what it
/// holds and podgate no longer wants is removed.
pub fn build(work: &Work, snapshot: &Snapshot, observed: Option<&LbState>, epoch: u64) -> Batch {
    build_owned(work, snapshot, observed, epoch, None, None)
}

/// [`build`] for a controller that pushes as `owner`: a full sync removes only what
/// `owner` registered, never what another controller sharing the LB did. `held`: the
/// upstreams the LB is known to hold (as last acknowledged); a changed upstream found
/// there goes as an [`UpstreamPatch`] — one pod's change instead of the whole upstream.
pub fn build_owned(
    work: &Work,
    snapshot: &Snapshot,
    observed: Option<&LbState>,
    epoch: u64,
    owner: Option<&str>,
    held: Option<&UpstreamMap>,
) -> Batch {
    let mut batch = Batch {
        epoch,
        owner: owner.map(str::to_owned),
        ..Batch::default()
    };
    if work.full {
        batch.upsert_upstreams = snapshot
            .upstream_list()
            .iter()
            .map(|u| (**u).clone())
            .collect();
        batch.routes = Some(snapshot.route_table());
        batch.upsert_certificates = snapshot.certificates.values().cloned().collect();
        if let Some(observed) = observed {
            let wanted: BTreeSet<&UpstreamKey> = snapshot.upstreams.keys().collect();
            batch.remove_upstreams = observed
                .upstreams
                .iter()
                .map(|u| &u.key)
                .filter(|k| !wanted.contains(k) && observed.owns_upstream(owner, k))
                .cloned()
                .collect();
            batch.remove_certificates = observed
                .certificates
                .iter()
                .map(|c| &c.id)
                .filter(|id| {
                    !snapshot.certificates.contains_key(*id) && observed.owns_certificate(owner, id)
                })
                .cloned()
                .collect();
        }
        return batch;
    }
    for key in &work.upstreams {
        let Some(u) = snapshot.upstreams.get(key) else {
            batch.remove_upstreams.push(key.clone());
            continue;
        };
        match held.and_then(|h| h.get(key)) {
            // The LB holds exactly this version already.
            Some(old) if old == u => {}
            Some(old) => match UpstreamPatch::between(old, u) {
                Some(patch) if patch.is_empty() => {}
                Some(patch) => batch.patch_upstreams.push(patch),
                None => batch.upsert_upstreams.push((**u).clone()),
            },
            None => batch.upsert_upstreams.push((**u).clone()),
        }
    }
    if work.routes {
        batch.routes = Some(snapshot.route_table());
    }
    for id in &work.certificates {
        match snapshot.certificates.get(id) {
            Some(c) => batch.upsert_certificates.push(c.clone()),
            None => batch.remove_certificates.push(id.clone()),
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OwnerState, PortRef, Upstream};

    fn key(name: &str) -> UpstreamKey {
        UpstreamKey::new("ns", name, PortRef::Number(80))
    }

    /// The LB holds `mine` (owner me), `theirs` (owner them) and `old` (no owner);
    /// podgate wants none of them.
    fn observed() -> LbState {
        let up = |name: &str| Upstream {
            key: key(name),
            shares: Vec::new(),
            endpoints: Vec::new(),
        };
        let owner = |owner: &str, name: &str| OwnerState {
            owner: owner.to_owned(),
            upstreams: vec![key(name)],
            ..OwnerState::default()
        };
        LbState {
            upstreams: vec![up("mine"), up("old"), up("theirs")],
            owners: vec![owner("me", "mine"), owner("them", "theirs")],
            ..LbState::default()
        }
    }

    #[test]
    fn a_full_sync_removes_only_what_its_owner_registered() {
        let work = Work {
            full: true,
            ..Work::default()
        };
        let snapshot = Snapshot::default();
        let lb = observed();
        let owned = build_owned(&work, &snapshot, Some(&lb), 1, Some("me"), None);
        assert_eq!(owned.owner.as_deref(), Some("me"));
        assert_eq!(owned.remove_upstreams, [key("mine")]);
        let anonymous = build(&work, &snapshot, Some(&lb), 1);
        assert_eq!(anonymous.owner, None);
        assert_eq!(anonymous.remove_upstreams, [key("old")]);
    }
}
