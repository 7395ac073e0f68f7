//! Desired state + what changed → the batch to push. Pure.

use std::collections::BTreeSet;

use crate::index::Snapshot;
use crate::model::{Batch, LbState, UpstreamKey};

use super::desired::Work;

/// The batch for `work`. For a full sync, `observed` is what the LB holds now: what it
/// holds and podgate no longer wants is removed.
pub fn build(work: &Work, snapshot: &Snapshot, observed: Option<&LbState>, epoch: u64) -> Batch {
    build_owned(work, snapshot, observed, epoch, None)
}

/// [`build`] for a controller that pushes as `owner`: a full sync removes only what
/// `owner` registered, never what another controller sharing the LB did.
pub fn build_owned(
    work: &Work,
    snapshot: &Snapshot,
    observed: Option<&LbState>,
    epoch: u64,
    owner: Option<&str>,
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
        match snapshot.upstreams.get(key) {
            Some(u) => batch.upsert_upstreams.push((**u).clone()),
            None => batch.remove_upstreams.push(key.clone()),
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
