//! Items an LB refused → Warning reports on the objects they come from, for the cluster
//! Event publishers: an upstream on its Service, a certificate on its Secret, in every
//! cluster that has that object. A refused route table belongs to no single object: it
//! is reported in the admin view and the log only.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::cluster::MoreReports;
use crate::hub::Desired;
use crate::sync::{Item, TargetStatus};
use podgate_core::index::{Diagnostic, Index, Kind, ObjectRef, Report};
use podgate_core::model::ClusterName;

/// The reports of what `targets` hold quarantined, per cluster.
pub(crate) fn reports(
    targets: Vec<Arc<Mutex<TargetStatus>>>,
    desired: Arc<Desired>,
) -> MoreReports {
    Arc::new(move |cluster: &ClusterName| {
        let mut out = Vec::new();
        for target in &targets {
            // Not held while the Index is read: a worker takes them the other way round.
            let (lb, quarantined) = {
                let status = target.lock();
                (status.name.clone(), status.quarantined.clone())
            };
            for q in &quarantined {
                let (kind, namespace, name) = match &q.item {
                    Item::Upstream(key) => (Kind::Service, &*key.namespace, &*key.service),
                    Item::Certificate(id) => match id.split_once('/') {
                        Some((namespace, name)) => (Kind::Secret, namespace, name),
                        None => continue,
                    },
                    Item::Routes => continue,
                };
                if !desired.read(|i: &Index| i.has_object(cluster, kind, namespace, name)) {
                    continue;
                }
                out.push(Report {
                    object: ObjectRef {
                        cluster: cluster.clone(),
                        kind,
                        namespace: Arc::from(namespace),
                        name: Arc::from(name),
                    },
                    diagnostic: Diagnostic {
                        reason: "LbRejected",
                        message: format!(
                            "LB {} refused {}: {}; it is left out of that LB until it changes",
                            lb, q.item, q.error
                        ),
                    },
                });
            }
        }
        out
    })
}
