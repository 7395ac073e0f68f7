//! Discovery documents of the simulated Kubernetes API server (a test double).
//!
//! Owns `/version`, `/api`, `/apis`, `/apis/{group}` and the `APIResourceList`s of
//! `/api/v1` and `/apis/{group}/{version}`, built from the registry of kinds, so that
//! `kube::Discovery` and `kubectl`-style clients find every kind served (including
//! registered custom kinds). Only the unaggregated (v1) discovery format is served.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::resources::Registry;

/// The verbs every served kind supports.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`: the sim poses as the v1.26.1 server the recordings came from.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "26",
        "gitVersion": "v1.26.1",
        "gitCommit": "8f94681cd294aa8cfd3407b8191f6c70214973a4",
        "gitTreeState": "clean",
        "buildDate": "2023-01-18T15:51:25Z",
        "goVersion": "go1.19.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub(crate) fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string() }]
    })
}

fn group_doc(registry: &Registry, group: &str) -> Option<Value> {
    let versions: Vec<Value> = registry
        .group_versions()
        .into_iter()
        .filter(|(g, _)| g == group)
        .map(|(g, v)| json!({ "groupVersion": format!("{g}/{v}"), "version": v }))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({ "name": group, "versions": versions, "preferredVersion": preferred }))
}

/// `/apis`: every named group.
pub(crate) fn group_list(registry: &Registry) -> Value {
    let mut names: Vec<String> = registry
        .group_versions()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| !g.is_empty())
        .collect();
    names.dedup();
    let groups: Vec<Value> = names
        .iter()
        .filter_map(|g| group_doc(registry, g))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/{group}`; `None` for a group not served.
pub(crate) fn group(registry: &Registry, group: &str) -> Option<Value> {
    let mut doc = group_doc(registry, group)?;
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/{group}/{version}`; `None` when nothing is served there.
pub(crate) fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let kinds = registry.in_group_version(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in &kinds {
        resources.push(json!({
            "name": k.gvr.resource,
            "singularName": k.kind.to_lowercase(),
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": VERBS,
        }));
        if k.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.gvr.resource),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = kinds[0].gvr.api_version();
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_the_builtin_kinds() {
        let r = Registry::builtin();
        let groups = group_list(&r);
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        for g in [
            "discovery.k8s.io",
            "networking.k8s.io",
            "coordination.k8s.io",
            "events.k8s.io",
        ] {
            assert!(names.contains(&g), "{g} missing from {names:?}");
        }
        let net = resource_list(&r, "networking.k8s.io", "v1").unwrap();
        let res: Vec<&str> = net["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        assert_eq!(res, ["ingressclasses", "ingresses", "ingresses/status"]);
        assert!(resource_list(&r, "nope.io", "v1").is_none());
        assert!(group(&r, "nope.io").is_none());
    }
}
