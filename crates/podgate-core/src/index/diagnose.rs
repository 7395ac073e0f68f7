//! Diagnostics on demand: what each object got wrong, attached to that object.

use std::sync::Arc;

use crate::model::{ClusterName, UpstreamKey};

use super::records::{IngressRecord, SecretRecord};
use super::{Diagnostic, Index, Kind, ObjectRef, Report, RouteScope};

fn object(cluster: &ClusterName, kind: Kind, namespace: &Arc<str>, name: &Arc<str>) -> ObjectRef {
    ObjectRef {
        cluster: cluster.clone(),
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
    }
}

impl Index {
    /// Every current problem, sorted by object. Computed on demand (call it when a
    /// mutation reported `diagnostics: true`).
    pub fn diagnostics(&self) -> Vec<Report> {
        let mut out = Vec::new();
        for (c, store) in self.clusters.iter().enumerate() {
            for (key, record) in &store.ingresses {
                // An Ingress of another class is not ours to judge.
                if self.claimed.contains_key(&(c, key.clone())) {
                    let obj = object(&store.name, Kind::Ingress, &key.0, &key.1);
                    for diagnostic in self.ingress_problems(&key.0, record) {
                        out.push(Report {
                            object: obj.clone(),
                            diagnostic,
                        });
                    }
                }
            }
            for ((ns, name), record) in &store.services {
                for d in &record.diagnostics {
                    let obj = object(&store.name, Kind::Service, ns, name);
                    out.push(Report {
                        object: obj,
                        diagnostic: d.clone(),
                    });
                }
            }
        }
        out.extend(self.gateway_reports());
        out.extend(self.conflict_reports());
        out.extend(self.reach_reports());
        out.sort();
        out.dedup();
        out
    }

    fn ingress_problems(&self, namespace: &Arc<str>, record: &IngressRecord) -> Vec<Diagnostic> {
        let mut out = record.diagnostics.clone();
        let backends = record
            .rules
            .iter()
            .map(|r| &r.upstream)
            .chain(&record.default_backend);
        out.extend(backends.filter_map(|up| self.backend_problem(up)));
        for (_, secret) in &record.tls {
            let key = (namespace.clone(), secret.clone());
            let found = self.clusters.iter().find_map(|c| c.secrets.get(&key));
            let why = match found {
                None => "not found".to_owned(),
                Some(SecretRecord::Invalid(why)) => format!("unusable: {why}"),
                Some(SecretRecord::Tls { .. }) => continue,
            };
            let message =
                format!("TLS Secret {namespace}/{secret} {why}; TLS is off for its hosts");
            out.push(Diagnostic::new("BadTlsSecret", message));
        }
        out
    }

    fn backend_problem(&self, up: &UpstreamKey) -> Option<Diagnostic> {
        let svc = (up.namespace.clone(), up.service.clone());
        let mut services = self
            .clusters
            .iter()
            .filter_map(|c| c.services.get(&svc))
            .peekable();
        let name = format!("{}/{}", up.namespace, up.service);
        if services.peek().is_none() {
            return Some(Diagnostic::new(
                "UnknownService",
                format!("Service {name} exists in no cluster"),
            ));
        }
        if services.all(|s| s.port_name(&up.port).is_none()) {
            return Some(Diagnostic::new(
                "UnknownServicePort",
                format!("Service {name} has no port {}", up.port),
            ));
        }
        None
    }

    /// What the Gateway API status says is wrong, on the object it says it of: a
    /// route parent not accepted, unresolved references or rules left out (on the
    /// HTTPRoute), a listener not accepted, unresolved or conflicted (on the Gateway).
    fn gateway_reports(&self) -> Vec<Report> {
        let mut out = Vec::new();
        for store in &self.clusters {
            let r = &store.gateway.resolution;
            for ((ns, name), parents) in &r.routes {
                let obj = object(
                    &store.name,
                    Kind::HTTPRoute,
                    &Arc::from(ns.as_str()),
                    &Arc::from(name.as_str()),
                );
                for p in parents {
                    for c in p.conditions.iter().filter(|c| problem(c)) {
                        let message =
                            format!("parent Gateway {}: {}", p.parent_ref.name, c.message);
                        out.push(Report {
                            object: obj.clone(),
                            diagnostic: Diagnostic::new(c.reason, message),
                        });
                    }
                }
            }
            for ((ns, name), status) in &r.gateways {
                let obj = object(
                    &store.name,
                    Kind::Gateway,
                    &Arc::from(ns.as_str()),
                    &Arc::from(name.as_str()),
                );
                for l in &status.listeners {
                    for c in l
                        .conditions
                        .iter()
                        .filter(|c| problem(c) && c.kind != "Programmed")
                    {
                        let message = format!("listener {}: {}", l.name, c.message);
                        out.push(Report {
                            object: obj.clone(),
                            diagnostic: Diagnostic::new(c.reason, message),
                        });
                    }
                }
            }
        }
        out
    }

    fn conflict_reports(&self) -> impl Iterator<Item = Report> + '_ {
        self.conflicts.iter().flat_map(|(scope, conflicts)| {
            conflicts.iter().map(move |c| {
                let path = c
                    .path
                    .as_ref()
                    .map_or_else(|| "default backend".to_owned(), ToString::to_string);
                let place = match scope {
                    RouteScope::Host(h) => format!("host {h} path {path}"),
                    RouteScope::AnyHost => format!("any host, path {path}"),
                    RouteScope::Default => "the catch-all default backend".to_owned(),
                };
                let message = format!(
                    "{place} is already claimed by the older Ingress {}",
                    c.winner
                );
                Report {
                    object: object(
                        &c.loser.cluster,
                        Kind::Ingress,
                        &c.loser.namespace,
                        &c.loser.name,
                    ),
                    diagnostic: Diagnostic::new("HostConflict", message),
                }
            })
        })
    }
}

/// A condition that reports a problem: a positive one not holding, or a negative one
/// (`Conflicted`, `PartiallyInvalid`) holding.
fn problem(c: &crate::gateway::Condition) -> bool {
    match c.kind {
        "Conflicted" | "PartiallyInvalid" => c.is_true(),
        _ => !c.is_true(),
    }
}
