//! Diagnostics on demand: what each object got wrong, attached to that object.

use std::sync::Arc;

use crate::model::ClusterName;

use super::records::SecretRecord;
use super::{Diagnostic, Index, Kind, ObjectRef, Report, RouteScope};

impl Index {
    /// Every current problem, sorted by object. Computed on demand (call it when a
    /// mutation reported `diagnostics: true`).
    pub fn diagnostics(&self) -> Vec<Report> {
        let mut out = Vec::new();
        let object =
            |cluster: &ClusterName, kind: Kind, ns: &Arc<str>, name: &Arc<str>| ObjectRef {
                cluster: cluster.clone(),
                kind,
                namespace: ns.clone(),
                name: name.clone(),
            };
        for (c, store) in self.clusters.iter().enumerate() {
            for (key, record) in &store.ingresses {
                let (ns, name) = key;
                if !self.claimed.contains_key(&(c, key.clone())) {
                    continue; // Not podgate's class: not ours to judge.
                }
                let obj = object(&store.name, Kind::Ingress, ns, name);
                for d in &record.diagnostics {
                    out.push(Report {
                        object: obj.clone(),
                        diagnostic: d.clone(),
                    });
                }
                for up in record
                    .rules
                    .iter()
                    .map(|r| &r.upstream)
                    .chain(&record.default_backend)
                {
                    let svc = (up.namespace.clone(), up.service.clone());
                    let services: Vec<_> = self
                        .clusters
                        .iter()
                        .filter_map(|c| c.services.get(&svc))
                        .collect();
                    let d = if services.is_empty() {
                        Some(Diagnostic::new(
                            "UnknownService",
                            format!(
                                "Service {}/{} exists in no cluster",
                                up.namespace, up.service
                            ),
                        ))
                    } else if services.iter().all(|s| s.port_name(&up.port).is_none()) {
                        Some(Diagnostic::new(
                            "UnknownServicePort",
                            format!(
                                "Service {}/{} has no port {}",
                                up.namespace, up.service, up.port
                            ),
                        ))
                    } else {
                        None
                    };
                    if let Some(d) = d {
                        out.push(Report {
                            object: obj.clone(),
                            diagnostic: d,
                        });
                    }
                }
                for (_, secret) in &record.tls {
                    let key = (ns.clone(), secret.clone());
                    let found: Vec<&SecretRecord> = self
                        .clusters
                        .iter()
                        .filter_map(|c| c.secrets.get(&key))
                        .collect();
                    let reason = match found.first() {
                        None => Some(format!(
                            "TLS Secret {ns}/{secret} not found: TLS disabled for its hosts"
                        )),
                        Some(SecretRecord::Invalid(why)) => Some(format!(
                            "TLS Secret {ns}/{secret} unusable ({why}): TLS disabled for its hosts"
                        )),
                        Some(SecretRecord::Tls { .. }) => None,
                    };
                    if let Some(message) = reason {
                        out.push(Report {
                            object: obj.clone(),
                            diagnostic: Diagnostic::new("BadTlsSecret", message),
                        });
                    }
                }
            }
            for ((ns, name), record) in &store.services {
                for d in &record.diagnostics {
                    out.push(Report {
                        object: object(&store.name, Kind::Service, ns, name),
                        diagnostic: d.clone(),
                    });
                }
            }
        }
        for (scope, conflicts) in &self.conflicts {
            for c in conflicts {
                let path = c
                    .path
                    .as_ref()
                    .map_or_else(|| "default backend".to_owned(), ToString::to_string);
                let where_ = match scope {
                    RouteScope::Host(h) => format!("host {h} path {path}"),
                    RouteScope::AnyHost => format!("any host, path {path}"),
                    RouteScope::Default => "the catch-all default backend".to_owned(),
                };
                out.push(Report {
                    object: object(
                        &c.loser.cluster,
                        Kind::Ingress,
                        &c.loser.namespace,
                        &c.loser.name,
                    ),
                    diagnostic: Diagnostic::new(
                        "HostConflict",
                        format!(
                            "{where_} is already claimed by the older Ingress {}",
                            c.winner
                        ),
                    ),
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
