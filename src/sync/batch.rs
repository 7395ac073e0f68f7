//! Desired state + what changed → the batch to push. Pure.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use podgate_core::index::{Snapshot, UpstreamMap};
use podgate_core::model::{Batch, LbState, Upstream, UpstreamKey, UpstreamPatch};

use crate::hub::Work;

/// The batch for `work` (tests; the worker pushes as an owner: [`build_owned`]). For a full sync, `observed` is what the LB holds now: what it
/// holds and podgate no longer wants is removed.
#[cfg(test)]
pub(crate) fn build(
    work: &Work,
    snapshot: &Snapshot,
    observed: Option<&LbState>,
    epoch: u64,
) -> Batch {
    build_owned(work, snapshot, observed, epoch, None, None)
}

/// [`build`] for a controller that pushes as `owner`: a full sync removes only what
/// `owner` registered, never what another controller sharing the LB did. `held`: the
/// upstreams the LB is known to hold (as last acknowledged); a changed upstream found
/// there goes as an [`UpstreamPatch`] — one pod's change instead of the whole upstream.
pub(crate) fn build_owned(
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
        let list = snapshot.upstream_list();
        return full_part(&list, 0..list.len(), true, snapshot, observed, epoch, owner);
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

/// How a full sync of `list` is cut when the LB takes it in parts of about
/// `part_endpoints` endpoints: ranges of `list`, the last one possibly empty (it carries
/// the routes, see [`full_part`]).
pub(crate) fn parts(list: &[Arc<Upstream>], part_endpoints: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut endpoints) = (0, 0);
    for (i, u) in list.iter().enumerate() {
        endpoints += u.endpoints.len().max(1);
        if endpoints >= part_endpoints {
            out.push(start..i + 1);
            (start, endpoints) = (i + 1, 0);
        }
    }
    out.push(start..list.len());
    out
}

/// One part of a full sync: the upstreams `list[range]`; the `last` part also carries
/// the route table, the certificates and the removals, so that the LB never routes to
/// an upstream it does not hold yet. For `observed` see [`build`].
pub(crate) fn full_part(
    list: &[Arc<Upstream>],
    range: Range<usize>,
    last: bool,
    snapshot: &Snapshot,
    observed: Option<&LbState>,
    epoch: u64,
    owner: Option<&str>,
) -> Batch {
    let mut batch = Batch {
        epoch,
        owner: owner.map(str::to_owned),
        upsert_upstreams: list[range].iter().map(|u| (**u).clone()).collect(),
        ..Batch::default()
    };
    if !last {
        return batch;
    }
    batch.complete = true;
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
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{OwnerState, PortRef, Upstream};

    fn key(name: &str) -> UpstreamKey {
        UpstreamKey::new("ns", name, PortRef::Number(80))
    }

    /// The LB holds `mine` (owner me), `theirs` (owner them) and `old` (no owner);
    /// podgate wants none of them.
    fn observed() -> LbState {
        let up = |name: &str| Upstream {
            health_check: None,
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

    #[test]
    fn a_full_sync_in_parts_sends_every_upstream_once_and_the_routes_last() {
        let up = |name: &str, n: usize| {
            Arc::new(Upstream {
                health_check: None,
                key: key(name),
                shares: Vec::new(),
                endpoints: (0..n)
                    .map(|i| podgate_core::model::Endpoint {
                        cluster: "idc".into(),
                        address: std::net::IpAddr::from([10, 0, 0, u8::try_from(i).unwrap()]),
                        port: 80,
                        zone: None,
                        node: None,
                        state: podgate_core::model::EndpointState::Active,
                        weight: 1,
                    })
                    .collect(),
            })
        };
        let list = vec![up("a", 3), up("b", 3), up("c", 3), up("d", 0), up("e", 3)];
        let ranges = parts(&list, 5);
        // a+b reach 5 endpoints, c+d+e (an empty upstream counts as one) the next 5;
        // the last part is empty and carries the routes.
        assert_eq!(ranges, vec![0..2, 2..5, 5..5]);
        assert_eq!(parts(&list, 100).len(), 1);
        assert_eq!(
            parts(&[], 5),
            vec![0..0],
            "an empty world still sends its routes"
        );
        let lb = observed();
        let snapshot = Snapshot::default();
        let batches: Vec<Batch> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                full_part(
                    &list,
                    r.clone(),
                    i == 2,
                    &snapshot,
                    Some(&lb),
                    1,
                    Some("me"),
                )
            })
            .collect();
        let sent: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.upsert_upstreams.iter().map(|u| &*u.key.service))
            .collect();
        assert_eq!(sent, ["a", "b", "c", "d", "e"]);
        assert!(
            batches[..2]
                .iter()
                .all(|b| b.routes.is_none() && b.remove_upstreams.is_empty())
        );
        assert!(batches[2].routes.is_some());
        assert_eq!(batches[2].remove_upstreams, [key("mine")]);
    }
}
