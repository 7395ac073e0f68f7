//! Items an LB refused → Warning reports on the objects they come from, for the cluster
//! Event publishers: an upstream on its Service, a certificate on its Secret, in every
//! cluster that has that object. A refused route table belongs to no single object: it
//! is reported in the admin view and the log only. An LB that cannot serve Gateway API
//! rules leaves their hosts out: each HTTPRoute served elsewhere is told so.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::cluster::MoreReports;
use crate::hub::Desired;
use crate::sync::{Item, TargetStatus};
use podgate_core::index::{Diagnostic, Index, Kind, ObjectRef, Report, RouteScope};
use podgate_core::model::{ClusterName, HostPattern};

/// The reports of what `targets` hold quarantined, per cluster.
pub(crate) fn reports(
    targets: Vec<Arc<Mutex<TargetStatus>>>,
    desired: Arc<Desired>,
) -> MoreReports {
    Arc::new(move |cluster: &ClusterName| {
        let mut out = Vec::new();
        let mut no_rules = Vec::new();
        for target in &targets {
            // Not held while the Index is read: a worker takes them the other way round.
            let (lb, quarantined, serves_rules) = {
                let status = target.lock();
                (
                    status.name.clone(),
                    status.quarantined.clone(),
                    status.serves_rules,
                )
            };
            if !serves_rules {
                no_rules.push(lb.clone());
            }
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
        if !no_rules.is_empty() {
            out.extend(rules_left_out(&desired, cluster, &no_rules));
        }
        out
    })
}

/// Each HTTPRoute of `cluster` whose host `lbs` leave out (its rules say more than an
/// Ingress path: `lb::rules`), reported once naming them all (an Event series keeps
/// the note of its first Event).
fn rules_left_out(desired: &Desired, cluster: &ClusterName, lbs: &[String]) -> Vec<Report> {
    let message = left_out_message(lbs);
    left_out_routes(desired, cluster)
        .into_iter()
        .map(|(namespace, name)| Report {
            object: ObjectRef {
                cluster: cluster.clone(),
                kind: Kind::HTTPRoute,
                namespace: Arc::from(namespace.as_str()),
                name: Arc::from(name.as_str()),
            },
            diagnostic: Diagnostic {
                reason: "UnsupportedByLB",
                message: message.clone(),
            },
        })
        .collect()
}

fn left_out_message(lbs: &[String]) -> String {
    format!(
        "cannot serve Gateway API rules, so this route's hosts are left out of them (served by the other LBs): {}",
        lbs.join(", ")
    )
}

/// The HTTPRoutes (`namespace`, `name`) of `cluster` whose hosts an LB that serves no
/// Gateway API rules leaves out (their rules say more than an Ingress path).
fn left_out_routes(desired: &Desired, cluster: &ClusterName) -> Vec<(String, String)> {
    let Some(resolution) = desired.read(|i: &Index| i.gateway_resolution(cluster)) else {
        return Vec::new();
    };
    // Only the virtual hosts the routes are served on are looked at.
    let vhosts = desired.snapshot().vhosts;
    let mut routes: Vec<(String, String)> = resolution
        .attachments
        .iter()
        .filter(|a| {
            let host = a
                .hostname
                .as_deref()
                .and_then(|h| HostPattern::parse(h).ok());
            let scope = host.clone().map_or(RouteScope::AnyHost, RouteScope::Host);
            vhosts
                .get(&scope)
                .is_some_and(|v| crate::lb::rules::left_out(host.as_ref(), v))
        })
        .map(|a| a.route.clone())
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

/// For the Gateway API status writer: per HTTPRoute of a cluster that some LB leaves
/// out, the message naming those LBs (`podgate.io/ServedByAllLBs` False).
pub(crate) fn routes_left_out(
    targets: Vec<Arc<Mutex<TargetStatus>>>,
    desired: Arc<Desired>,
) -> crate::cluster::RoutesLeftOut {
    Arc::new(move |cluster: &ClusterName| {
        let lbs: Vec<String> = targets
            .iter()
            .filter_map(|t| {
                let status = t.lock();
                (!status.serves_rules).then(|| status.name.clone())
            })
            .collect();
        if lbs.is_empty() {
            return std::collections::BTreeMap::new();
        }
        let message = left_out_message(&lbs);
        left_out_routes(&desired, cluster)
            .into_iter()
            .map(|key| (key, message.clone()))
            .collect()
    })
}
