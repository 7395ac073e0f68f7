//! Strategic merge patches (`application/strategic-merge-patch+json`) as the simulated
//! Kubernetes API server (a test double) applies them to built-in kinds.
//!
//! Maps merge like a JSON merge patch (`null` removes a key). A list merges by its
//! `patchMergeKey` when the Kubernetes type declares one for that field (the table in
//! [`merge_key`]; `status.conditions` by `type` is the one that matters: a JSON merge
//! patch there replaces the kubelet's whole list, see k8s-wire 18c/18d): an item whose
//! key exists is merged in place, new items go to the front in patch order, and an
//! item with `"$patch": "delete"` removes its match. Every other list is replaced.
//! `$setElementOrder/…` and `$retainKeys` directives are accepted and ignored. Custom
//! resources have no strategy and refuse these patches with 415 (`write`).

use serde_json::{Map, Value};

/// The `patchMergeKey` of a list field of a built-in kind, by the field's path from the
/// object's root (`status.conditions`), as the Kubernetes Go types declare it.
fn merge_key(kind: &str, path: &str) -> Option<&'static str> {
    match (kind, path) {
        (_, "status.conditions") | ("Node", "status.addresses") => Some("type"),
        ("Pod", "status.podIPs") => Some("ip"),
        (
            "Pod",
            "status.containerStatuses"
            | "status.initContainerStatuses"
            | "spec.containers"
            | "spec.initContainers"
            | "spec.volumes",
        ) => Some("name"),
        ("Pod", "spec.containers.ports") => Some("containerPort"),
        ("Service", "spec.ports") => Some("port"),
        _ => None,
    }
}

/// Applies `patch` to `doc` (an object of `kind`).
pub(crate) fn apply(kind: &str, doc: &mut Value, patch: &Value) {
    merge_value(kind, "", doc, patch);
}

fn merge_value(kind: &str, path: &str, doc: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(target) = doc else {
        return;
    };
    for (key, change) in changes {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match change {
            Value::Null => {
                target.remove(key);
            }
            Value::Array(items) => match merge_key(kind, &child) {
                Some(by) => {
                    let existing = target
                        .entry(key.clone())
                        .or_insert(Value::Array(Vec::new()));
                    merge_list(kind, &child, existing, items, by);
                }
                None => {
                    target.insert(key.clone(), change.clone());
                }
            },
            Value::Object(_) => {
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge_value(kind, &child, entry, change);
            }
            _ => {
                target.insert(key.clone(), change.clone());
            }
        }
    }
}

fn merge_list(kind: &str, path: &str, existing: &mut Value, items: &[Value], by: &str) {
    if !existing.is_array() {
        *existing = Value::Array(Vec::new());
    }
    let Value::Array(list) = existing else {
        return;
    };
    let mut fresh = Vec::new();
    for item in items {
        let key = item.get(by);
        let position = key.and_then(|k| list.iter().position(|e| e.get(by) == Some(k)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_value(kind, path, &mut list[i], item),
            (None, false) => {
                let mut new = Value::Object(Map::new());
                merge_value(kind, path, &mut new, item);
                fresh.push(new);
            }
        }
    }
    // New items go first, in patch order (no `$setElementOrder`), as the real server does.
    fresh.append(list);
    *list = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kubelet_status() -> Value {
        json!({ "status": { "phase": "Running", "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "ContainersReady", "status": "True" },
        ] } })
    }

    #[test]
    fn a_new_condition_goes_first_and_the_others_stay() {
        let mut pod = kubelet_status();
        apply(
            "Pod",
            &mut pod,
            &json!({ "status": { "conditions": [{ "type": "podgate.io/lb-registered", "status": "True" }] } }),
        );
        let types: Vec<&str> = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "podgate.io/lb-registered",
                "PodScheduled",
                "ContainersReady"
            ]
        );
        assert_eq!(pod["status"]["phase"], "Running");
    }

    #[test]
    fn an_existing_condition_is_updated_in_place() {
        let mut pod = kubelet_status();
        apply(
            "Pod",
            &mut pod,
            &json!({ "status": { "conditions": [{ "type": "ContainersReady", "status": "False", "reason": "Probe" }] } }),
        );
        assert_eq!(pod["status"]["conditions"][1]["status"], "False");
        assert_eq!(pod["status"]["conditions"][1]["reason"], "Probe");
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn delete_directives_and_lists_without_a_key() {
        let mut pod = kubelet_status();
        pod["spec"] = json!({ "readinessGates": [{ "conditionType": "a" }] });
        apply(
            "Pod",
            &mut pod,
            &json!({
                "spec": { "readinessGates": [{ "conditionType": "b" }] },
                "status": { "conditions": [{ "type": "PodScheduled", "$patch": "delete" }], "$setElementOrder/conditions": [] },
            }),
        );
        assert_eq!(
            pod["spec"]["readinessGates"],
            json!([{ "conditionType": "b" }])
        );
        assert_eq!(
            pod["status"]["conditions"],
            json!([{ "type": "ContainersReady", "status": "True" }])
        );
    }
}
