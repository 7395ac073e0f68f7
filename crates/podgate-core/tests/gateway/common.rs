//! Objects from JSON as a user writes them, and a cluster to resolve them against.

use std::collections::{BTreeMap, BTreeSet};

use podgate_core::gateway::{
    DEFAULT_CONTROLLER_NAME, Gateway, GatewayClass, HttpRoute, Labels, Lookup, ReferenceGrant,
    Resolution, RouteParentStatus, World, resolve,
};
use serde_json::{Value, json};

/// One cluster's Gateway API objects and what they refer to.
#[derive(Default)]
pub(crate) struct Cluster {
    pub classes: Vec<GatewayClass>,
    pub gateways: Vec<Gateway>,
    pub routes: Vec<HttpRoute>,
    pub grants: Vec<ReferenceGrant>,
    pub services: BTreeSet<(String, String)>,
    pub secrets: BTreeSet<(String, String)>,
    pub namespaces: BTreeMap<String, Labels>,
}

impl Lookup for Cluster {
    fn service(&self, namespace: &str, name: &str) -> bool {
        self.services
            .contains(&(namespace.to_owned(), name.to_owned()))
    }
    fn tls_secret(&self, namespace: &str, name: &str) -> bool {
        self.secrets
            .contains(&(namespace.to_owned(), name.to_owned()))
    }
    fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace)
    }
}

impl Cluster {
    /// podgate's class `podgate`, a Gateway `default/gw` with `listeners`, and the
    /// Services `default/web` and `default/api`.
    pub(crate) fn with_gateway(listeners: Value) -> Self {
        let mut c = Self::default();
        c.classes.push(class("podgate", DEFAULT_CONTROLLER_NAME));
        c.gateways
            .push(gateway("default", "gw", "podgate", listeners));
        c.add_service("default", "web");
        c.add_service("default", "api");
        c
    }

    pub(crate) fn add_service(&mut self, namespace: &str, name: &str) {
        self.services
            .insert((namespace.to_owned(), name.to_owned()));
    }

    pub(crate) fn route(&mut self, route: HttpRoute) {
        self.routes.push(route);
    }

    pub(crate) fn resolve(&self) -> Resolution {
        let classes: Vec<&GatewayClass> = self.classes.iter().collect();
        let gateways: Vec<&Gateway> = self.gateways.iter().collect();
        let routes: Vec<&HttpRoute> = self.routes.iter().collect();
        let grants: Vec<&ReferenceGrant> = self.grants.iter().collect();
        let world = World {
            controller_name: DEFAULT_CONTROLLER_NAME,
            classes: &classes,
            gateways: &gateways,
            routes: &routes,
            grants: &grants,
        };
        resolve(&world, self)
    }
}

pub(crate) fn class(name: &str, controller: &str) -> GatewayClass {
    serde_json::from_value(json!({
        "metadata": {"name": name, "generation": 1},
        "spec": {"controllerName": controller},
    }))
    .unwrap()
}

pub(crate) fn gateway(namespace: &str, name: &str, class: &str, listeners: Value) -> Gateway {
    let mut gateway = json!({
        "metadata": {"namespace": namespace, "name": name, "generation": 2},
        "spec": {"gatewayClassName": class},
    });
    gateway["spec"]["listeners"] = listeners;
    serde_json::from_value(gateway).unwrap()
}

/// An HTTPRoute `namespace/name` created at `created` (seconds after 2026-01-01).
pub(crate) fn route(namespace: &str, name: &str, created: i64, spec: Value) -> HttpRoute {
    let created = jiff_free_timestamp(created);
    let mut route = json!({
        "metadata": {"namespace": namespace, "name": name, "generation": 3,
                     "creationTimestamp": created},
    });
    route["spec"] = spec;
    serde_json::from_value(route).unwrap()
}

fn jiff_free_timestamp(offset: i64) -> String {
    let (m, s) = (offset / 60, offset % 60);
    format!("2026-01-01T00:{m:02}:{s:02}Z")
}

pub(crate) fn http(name: &str, port: i32) -> Value {
    json!({"name": name, "port": port, "protocol": "HTTP"})
}

/// The route's status entry for its only parent.
pub(crate) fn parent<'a>(r: &'a Resolution, namespace: &str, name: &str) -> &'a RouteParentStatus {
    let parents = r
        .routes
        .get(&(namespace.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no status for {namespace}/{name}: {:?}", r.routes));
    assert_eq!(parents.len(), 1, "{parents:?}");
    &parents[0]
}

/// `(status, reason)` of one condition of a route parent.
pub(crate) fn condition<'a>(p: &'a RouteParentStatus, kind: &str) -> (&'a str, &'a str) {
    let c = p
        .condition(kind)
        .unwrap_or_else(|| panic!("no {kind} condition: {:?}", p.conditions));
    (c.status, c.reason)
}

/// Which hostnames the route `namespace/name` is served for.
pub(crate) fn hostnames(r: &Resolution, namespace: &str, name: &str) -> Vec<Option<String>> {
    let mut hosts: Vec<Option<String>> = r
        .attachments
        .iter()
        .filter(|a| a.route == (namespace.to_owned(), name.to_owned()))
        .map(|a| a.hostname.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}
