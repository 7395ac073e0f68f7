//! A Gateway's listeners, checked one by one: protocol, TLS certificate references,
//! route kinds and conflicts between listeners on one port. A listener that is not
//! programmed takes no routes.

use std::collections::BTreeMap;

use super::refs::{self, From, To};
use super::rules::Refusal;
use super::status::Condition;
use super::types::{GROUP, Gateway, Listener, RouteGroupKind};
use super::{Lookup, World};

const HTTP_ROUTE: &str = "HTTPRoute";

/// One listener as resolution sees it.
pub(crate) struct CheckedListener<'a> {
    pub(crate) listener: &'a Listener,
    /// Route kinds it accepts (of those podgate serves).
    pub(crate) kinds: Vec<RouteGroupKind>,
    /// Whether routes may attach: accepted, references resolved enough to serve,
    /// no conflict.
    pub(crate) programmed: bool,
    /// The certificates it serves, `(namespace, secret)`, in reference order.
    pub(crate) certificates: Vec<(String, String)>,
    /// Accepted, ResolvedRefs, Conflicted and Programmed.
    pub(crate) conditions: Vec<Condition>,
}

impl CheckedListener<'_> {
    pub(crate) fn allows_http_routes(&self) -> bool {
        self.programmed && self.kinds.iter().any(|k| k.kind == HTTP_ROUTE)
    }
}

pub(crate) fn check<'a>(
    gateway: &'a Gateway,
    world: &World<'_>,
    lookup: &dyn Lookup,
) -> Vec<CheckedListener<'a>> {
    let conflicts = conflicts(&gateway.spec.listeners);
    gateway
        .spec
        .listeners
        .iter()
        .map(|listener| {
            let namespace = gateway.metadata.namespace.as_deref().unwrap_or_default();
            let (accepted, accepted_why) = protocol(listener);
            let (kinds, kinds_ok) = route_kinds(listener);
            let (certificates, certs_why) = if listener.protocol == "HTTPS" {
                certificates(listener, namespace, world, lookup)
            } else {
                (Vec::new(), None)
            };
            let conflict = conflicts.get(listener.name.as_str()).copied();
            let mut resolved = (true, "ResolvedRefs", "references resolved".to_owned());
            if let Some((reason, message)) = certs_why.clone() {
                resolved = (false, reason, message);
            } else if !kinds_ok {
                resolved = (
                    false,
                    "InvalidRouteKinds",
                    "allowedRoutes.kinds names a kind podgate does not serve (only HTTPRoute)"
                        .to_owned(),
                );
            }
            let certs_ok = listener.protocol != "HTTPS" || !certificates.is_empty();
            let programmed = accepted && certs_ok && conflict.is_none() && !kinds.is_empty();
            let conditions = vec![
                match accepted_why {
                    None => Condition::new("Accepted", true, "Accepted", "accepted".to_owned()),
                    Some(message) => {
                        Condition::new("Accepted", false, "UnsupportedProtocol", message)
                    }
                },
                Condition::new("ResolvedRefs", resolved.0, resolved.1, resolved.2),
                match conflict {
                    None => Condition::new(
                        "Conflicted",
                        false,
                        "NoConflicts",
                        "no conflicts".to_owned(),
                    ),
                    Some(reason) => Condition::new(
                        "Conflicted",
                        true,
                        reason,
                        format!("another listener on port {} conflicts", listener.port),
                    ),
                },
                if programmed {
                    Condition::new("Programmed", true, "Programmed", "programmed".to_owned())
                } else {
                    Condition::new(
                        "Programmed",
                        false,
                        "Invalid",
                        "not programmed: see the other conditions".to_owned(),
                    )
                },
            ];
            CheckedListener {
                listener,
                kinds,
                programmed,
                certificates,
                conditions,
            }
        })
        .collect()
}

/// HTTP and HTTPS (TLS terminated) are served; anything else is reported.
fn protocol(listener: &Listener) -> (bool, Option<String>) {
    match listener.protocol.as_str() {
        "HTTP" => (true, None),
        "HTTPS" => {
            let mode = listener.tls.as_ref().and_then(|t| t.mode.as_deref());
            if mode.is_some_and(|m| m != "Terminate") {
                (
                    false,
                    Some(
                        "HTTPS listeners terminate TLS; tls.mode Passthrough is not supported"
                            .to_owned(),
                    ),
                )
            } else {
                (true, None)
            }
        }
        other => (
            false,
            Some(format!(
                "protocol {other:?} is not supported (HTTP and HTTPS are)"
            )),
        ),
    }
}

/// The kinds the listener accepts: HTTPRoute by default; named kinds other than
/// HTTPRoute are reported (`false`) and left out.
fn route_kinds(listener: &Listener) -> (Vec<RouteGroupKind>, bool) {
    let http_route = RouteGroupKind {
        group: Some(GROUP.to_owned()),
        kind: HTTP_ROUTE.to_owned(),
    };
    let named = listener
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    if named.is_empty() {
        return (vec![http_route], true);
    }
    let valid =
        |k: &RouteGroupKind| k.kind == HTTP_ROUTE && k.group.as_deref().is_none_or(|g| g == GROUP);
    let kinds = if named.iter().any(valid) {
        vec![http_route]
    } else {
        Vec::new()
    };
    (kinds, named.iter().all(valid))
}

/// The listener's usable certificates, and the first reason one was not.
fn certificates(
    listener: &Listener,
    namespace: &str,
    world: &World<'_>,
    lookup: &dyn Lookup,
) -> (Vec<(String, String)>, Option<Refusal>) {
    let refs = listener
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    if refs.is_empty() {
        return (
            Vec::new(),
            Some((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".to_owned(),
            )),
        );
    }
    let mut usable = Vec::new();
    let mut problem = None;
    for r in refs {
        let secret_ns = r.namespace.as_deref().unwrap_or(namespace);
        let core = r.group.as_deref().unwrap_or_default().is_empty();
        let secret = r.kind.as_deref().unwrap_or("Secret") == "Secret";
        let why = if !(core && secret) {
            Some((
                "InvalidCertificateRef",
                format!("{} is not a core Secret", r.name),
            ))
        } else if !refs::permitted(
            world.grants,
            &From {
                group: GROUP,
                kind: "Gateway",
                namespace,
            },
            &To {
                group: "",
                kind: "Secret",
                namespace: secret_ns,
                name: &r.name,
            },
        ) {
            Some((
                "RefNotPermitted",
                format!(
                    "no ReferenceGrant in {secret_ns} lets this Gateway use Secret {}",
                    r.name
                ),
            ))
        } else if !lookup.tls_secret(secret_ns, &r.name) {
            Some((
                "InvalidCertificateRef",
                format!(
                    "Secret {secret_ns}/{} is missing or not a valid kubernetes.io/tls Secret",
                    r.name
                ),
            ))
        } else {
            None
        };
        match why {
            None => usable.push((secret_ns.to_owned(), r.name.clone())),
            Some(w) => {
                problem.get_or_insert(w);
            }
        }
    }
    (usable, problem)
}

/// Listeners on one port that cannot all be served: different protocols
/// (`ProtocolConflict`) or the same hostname twice (`HostnameConflict`), by name.
fn conflicts(listeners: &[Listener]) -> BTreeMap<&str, &'static str> {
    let mut by_port: BTreeMap<i32, Vec<&Listener>> = BTreeMap::new();
    for l in listeners {
        by_port.entry(l.port).or_default().push(l);
    }
    let mut found = BTreeMap::new();
    for group in by_port.values() {
        let protocols = group.iter().map(|l| l.protocol.as_str());
        if protocols.clone().any(|p| p != group[0].protocol) {
            for l in group {
                found.insert(l.name.as_str(), "ProtocolConflict");
            }
            continue;
        }
        let mut hosts: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
        for l in group {
            hosts
                .entry(l.hostname.as_deref())
                .or_default()
                .push(l.name.as_str());
        }
        for names in hosts.values().filter(|n| n.len() > 1) {
            for name in names {
                found.insert(*name, "HostnameConflict");
            }
        }
    }
    found
}
