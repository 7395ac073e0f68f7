//! The Gateway API (`GatewayClass`, `Gateway`, `HTTPRoute`, `ReferenceGrant`) as the
//! specification states it, pure: the objects of one cluster in, what podgate serves
//! (rules per listener and hostname, in the specification's precedence) and the status
//! every object should show out. No I/O and no clock; never panics on any input.
//!
//! `resolve` decides everything in one pass: listeners are checked (`listeners.rs`),
//! each route's `parentRefs` attach to listeners by section name, port, allowed
//! namespaces and kinds, and hostname intersection (`hostname.rs`), each rule is served
//! or refused (`rules.rs`), references across namespaces need a ReferenceGrant
//! (`refs.rs`), and `table.rs` orders the served matches of one hostname.

mod contract;
mod hostname;
mod listeners;
mod refs;
mod rules;
mod selector;
mod status;
mod table;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use contract::{http_rule, upstream_key};
pub use hostname::{intersect, within};
pub use rules::{Backend, Filter, PathRule, Rank, RouteMatch, ServedRule, precedence};
pub use status::{Condition, GatewayClassStatus, GatewayStatus, ListenerStatus, RouteParentStatus};
pub use table::{HostRules, RuleRef, host_rules};
pub use types::{Gateway, GatewayClass, HttpRoute, Labels, ParentReference, ReferenceGrant};

use rules::Refusal;
use status::at_generation;
use types::GROUP;

/// The GatewayClass `controllerName` podgate answers to unless configured otherwise.
pub const DEFAULT_CONTROLLER_NAME: &str = "podgate.io/gateway-controller";

/// The Gateway API objects of one cluster, and podgate's controller name.
pub struct World<'a> {
    pub controller_name: &'a str,
    pub classes: &'a [&'a GatewayClass],
    pub gateways: &'a [&'a Gateway],
    pub routes: &'a [&'a HttpRoute],
    pub grants: &'a [&'a ReferenceGrant],
}

/// What resolution asks about the rest of the cluster.
pub trait Lookup {
    /// Whether the Service `namespace/name` exists.
    fn service(&self, namespace: &str, name: &str) -> bool;
    /// Whether `namespace/name` is a usable `kubernetes.io/tls` Secret.
    fn tls_secret(&self, namespace: &str, name: &str) -> bool;
    /// The labels of a namespace (`None`: not known, so no selector matches it).
    fn namespace_labels(&self, namespace: &str) -> Option<&Labels>;
}

/// `(namespace, name)` of a namespaced object.
pub type Key = (String, String);

/// One served rule of one route, attached to one listener for one hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub gateway: Key,
    pub listener: String,
    pub port: i32,
    /// `None`: any host.
    pub hostname: Option<String>,
    /// The listener's certificates (`namespace`, `secret`), empty for HTTP.
    pub certificates: Vec<Key>,
    pub route: Key,
    /// The route's `creationTimestamp` (seconds), for precedence.
    pub created: i64,
    pub rule_index: usize,
    pub rule: Arc<ServedRule>,
}

/// Everything `resolve` decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// podgate's GatewayClasses by name.
    pub classes: BTreeMap<String, GatewayClassStatus>,
    /// Gateways of podgate's classes.
    pub gateways: BTreeMap<Key, GatewayStatus>,
    /// Per HTTPRoute, the entries of `status.parents` for podgate's parents.
    pub routes: BTreeMap<Key, Vec<RouteParentStatus>>,
    /// What podgate serves, in no particular order (see [`host_rules`]).
    pub attachments: Vec<Attachment>,
}

/// See the module documentation.
pub fn resolve(world: &World<'_>, lookup: &dyn Lookup) -> Resolution {
    let mut out = Resolution::default();
    for &class in world.classes {
        if class.spec.controller_name != world.controller_name {
            continue;
        }
        let Some(name) = class.metadata.name.clone() else {
            continue;
        };
        let generation = class.metadata.generation.unwrap_or_default();
        let accepted = Condition::new(
            "Accepted",
            true,
            "Accepted",
            "podgate serves this class".to_owned(),
        );
        out.classes.insert(
            name,
            GatewayClassStatus {
                conditions: at_generation(vec![accepted], generation),
            },
        );
    }
    let mut gateways: BTreeMap<Key, (&Gateway, Vec<listeners::CheckedListener<'_>>, Vec<i32>)> =
        BTreeMap::new();
    for &gateway in world.gateways {
        if !out.classes.contains_key(&gateway.spec.gateway_class_name) {
            continue;
        }
        let Some(key) = key_of(&gateway.metadata) else {
            continue;
        };
        let checked = listeners::check(gateway, world, lookup);
        let attached = vec![0; checked.len()];
        gateways.insert(key, (gateway, checked, attached));
    }
    for &route in world.routes {
        attach_route(route, world, lookup, &mut gateways, &mut out);
    }
    for (key, (gateway, checked, attached)) in gateways {
        out.gateways
            .insert(key, gateway_status(gateway, &checked, &attached));
    }
    out
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone()?,
    ))
}

fn gateway_status(
    gateway: &Gateway,
    checked: &[listeners::CheckedListener<'_>],
    attached: &[i32],
) -> GatewayStatus {
    let generation = gateway.metadata.generation.unwrap_or_default();
    let programmed = checked.iter().filter(|l| l.programmed).count();
    let all = checked.len();
    let accepted = if programmed == all {
        Condition::new("Accepted", true, "Accepted", "accepted".to_owned())
    } else {
        Condition::new(
            "Accepted",
            programmed > 0,
            "ListenersNotValid",
            format!("{} of {all} listeners are not valid", all - programmed),
        )
    };
    let programmed_condition = if programmed > 0 {
        Condition::new(
            "Programmed",
            true,
            "Programmed",
            format!("{programmed} of {all} listeners programmed"),
        )
    } else {
        Condition::new(
            "Programmed",
            false,
            "Invalid",
            "no listener can be programmed".to_owned(),
        )
    };
    GatewayStatus {
        conditions: at_generation(vec![accepted, programmed_condition], generation),
        listeners: checked
            .iter()
            .zip(attached)
            .map(|(l, n)| ListenerStatus {
                name: l.listener.name.clone(),
                supported_kinds: l.kinds.clone(),
                attached_routes: *n,
                conditions: at_generation(l.conditions.clone(), generation),
            })
            .collect(),
    }
}

type Gateways<'a> = BTreeMap<Key, (&'a Gateway, Vec<listeners::CheckedListener<'a>>, Vec<i32>)>;

/// Attaches one route to each of podgate's parents it names and records its status.
fn attach_route(
    route: &HttpRoute,
    world: &World<'_>,
    lookup: &dyn Lookup,
    gateways: &mut Gateways<'_>,
    out: &mut Resolution,
) {
    let Some(route_key) = key_of(&route.metadata) else {
        return;
    };
    let namespace = route_key.0.as_str();
    let generation = route.metadata.generation.unwrap_or_default();
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    let decided = Decided::new(route, namespace, world, lookup);
    let mut parents = Vec::new();
    for parent in &route.spec.parent_refs {
        let group = parent.group.as_deref().unwrap_or(GROUP);
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if group != GROUP || kind != "Gateway" {
            continue;
        }
        let gateway_key = (
            parent
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.to_owned()),
            parent.name.clone(),
        );
        let Some((_, checked, attached)) = gateways.get_mut(&gateway_key) else {
            continue; // not a Gateway of podgate's: another controller's entry
        };
        let accepted = match listeners_for(parent, route, lookup, &gateway_key, checked) {
            Err((reason, message)) => Condition::new("Accepted", false, reason, message),
            Ok(_) if decided.served.is_empty() && !decided.refused.is_empty() => {
                let (reason, message) = decided.refused[0].1.clone();
                Condition::new(
                    "Accepted",
                    false,
                    reason,
                    format!("no rule can be served: {message}"),
                )
            }
            Ok(found) => {
                for (index, hostnames) in found {
                    attached[index] += 1;
                    let l = &checked[index];
                    for hostname in hostnames {
                        for (rule_index, rule) in &decided.served {
                            out.attachments.push(Attachment {
                                gateway: gateway_key.clone(),
                                listener: l.listener.name.clone(),
                                port: l.listener.port,
                                hostname: hostname.clone(),
                                certificates: l.certificates.clone(),
                                route: route_key.clone(),
                                created,
                                rule_index: *rule_index,
                                rule: rule.clone(),
                            });
                        }
                    }
                }
                Condition::new("Accepted", true, "Accepted", "accepted".to_owned())
            }
        };
        let conditions = decided.conditions(accepted);
        parents.push(RouteParentStatus {
            parent_ref: parent.clone(),
            controller_name: world.controller_name.to_owned(),
            conditions: at_generation(conditions, generation),
        });
    }
    if !parents.is_empty() {
        out.routes.insert(route_key, parents);
    }
}

/// A route's rules, decided once for all its parents.
struct Decided {
    served: Vec<(usize, Arc<ServedRule>)>,
    refused: Vec<(usize, Refusal)>,
    /// The first backend that does not resolve.
    unresolved: Option<Refusal>,
}

impl Decided {
    fn new(route: &HttpRoute, namespace: &str, world: &World<'_>, lookup: &dyn Lookup) -> Self {
        let mut served = Vec::new();
        let mut refused = Vec::new();
        for (i, rule) in route.spec.rules.iter().enumerate() {
            match rules::serve(rule, namespace, world, lookup) {
                Ok(r) => served.push((i, Arc::new(r))),
                Err(why) => refused.push((i, why)),
            }
        }
        let unresolved = served
            .iter()
            .flat_map(|(_, r)| &r.backends)
            .find_map(|b| b.problem.clone());
        Self {
            served,
            refused,
            unresolved,
        }
    }

    /// Accepted as decided for one parent, PartiallyInvalid when some rules are not
    /// served, and ResolvedRefs.
    fn conditions(&self, accepted: Condition) -> Vec<Condition> {
        let accepted_ok = accepted.is_true();
        let mut conditions = vec![accepted];
        if accepted_ok && !self.refused.is_empty() {
            let list: Vec<String> = self
                .refused
                .iter()
                .map(|(i, (_, m))| format!("rule {i}: {m}"))
                .collect();
            conditions.push(Condition::new(
                "PartiallyInvalid",
                true,
                self.refused[0].1.0,
                format!("rules not served: {}", list.join("; ")),
            ));
        }
        conditions.push(match &self.unresolved {
            None => Condition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved".to_owned(),
            ),
            Some((reason, message)) => {
                Condition::new("ResolvedRefs", false, reason, message.clone())
            }
        });
        conditions
    }
}

/// Listener indexes with the hostnames served through each.
type Attached = Vec<(usize, Vec<Option<String>>)>;

/// The listeners of one Gateway a parentRef attaches to, with the hostnames served
/// through each; or why none accepts the route.
fn listeners_for(
    parent: &ParentReference,
    route: &HttpRoute,
    lookup: &dyn Lookup,
    gateway: &Key,
    checked: &[listeners::CheckedListener<'_>],
) -> Result<Attached, Refusal> {
    let route_ns = route.metadata.namespace.as_deref().unwrap_or_default();
    let named: Vec<usize> = (0..checked.len())
        .filter(|&i| {
            let l = checked[i].listener;
            parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| p == l.port)
        })
        .collect();
    if named.is_empty() {
        return Err((
            "NoMatchingParent",
            format!(
                "Gateway {}/{} has no listener with that sectionName/port",
                gateway.0, gateway.1
            ),
        ));
    }
    let allowed: Vec<usize> = named
        .into_iter()
        .filter(|&i| {
            checked[i].allows_http_routes()
                && namespace_allowed(&checked[i], &gateway.0, route_ns, lookup)
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!(
                "no listener of Gateway {}/{} allows this route",
                gateway.0, gateway.1
            ),
        ));
    }
    let found: Attached = allowed
        .into_iter()
        .filter_map(|i| {
            intersect(
                checked[i].listener.hostname.as_deref(),
                &route.spec.hostnames,
            )
            .map(|h| (i, h))
        })
        .collect();
    if found.is_empty() {
        return Err((
            "NoMatchingListenerHostname",
            "no hostname of the route intersects a listener's hostname".to_owned(),
        ));
    }
    Ok(found)
}

/// `allowedRoutes.namespaces`: `Same` (the default), `All`, or `Selector`.
fn namespace_allowed(
    l: &listeners::CheckedListener<'_>,
    gateway_ns: &str,
    route_ns: &str,
    lookup: &dyn Lookup,
) -> bool {
    let namespaces = l
        .listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => gateway_ns == route_ns,
        "Selector" => {
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            match (selector, lookup.namespace_labels(route_ns)) {
                (Some(s), Some(labels)) => selector::matches(s, labels),
                _ => false,
            }
        }
        _ => false,
    }
}
