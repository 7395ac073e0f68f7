//! Writes of the simulated Kubernetes API server (a test double): create, replace and
//! patch, on the main resource and on the `status` subresource (deletes: `delete`).
//!
//! Owns the write semantics of the real server that clients depend on: server-filled
//! metadata (uid, resourceVersion, creationTimestamp, generation), `409 AlreadyExists`,
//! `409 Conflict` on a stale `resourceVersion`, `404` for missing objects or
//! namespaces, `422` from `validate`, status kept by main-resource writes and only the
//! status taken from `/status` writes, no new version for a write that changes nothing.
//! Finalizers: deleting an object that has some only sets `deletionTimestamp`; the
//! update that removes the last one deletes it. Not done: managedFields, grace periods
//! (deletes without finalizers are immediate), real server-side apply (see `PatchKind`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::alloc;
use super::meta::{meta_mut, meta_str, name_suffix, new_uid, now_timestamp, spec_part};
use super::resources::{Gvr, ResourceKind};
use super::state::Shared;
use super::status::ApiError;
use super::store::{Store, key};
use super::validate::admit;

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object itself: its status, if it has a status subresource, is kept.
    Main,
    /// `/status`: only the status is taken from the request.
    Status,
}

/// How a PATCH body is applied, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386): lists are replaced.
    Merge,
    /// `application/strategic-merge-patch+json`: lists with a merge key are merged by
    /// it (`strategic`); built-in kinds only.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml`: approximated as a merge patch that creates the
    /// object when missing; no field ownership, no conflicts between managers.
    Apply,
}

impl PatchKind {
    pub(crate) fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

pub(super) fn namespaces() -> Gvr {
    Gvr::new("", "v1", "namespaces")
}

fn services() -> Gvr {
    Gvr::new("", "v1", "services")
}

/// Checks `apiVersion`/`kind` (filled in when missing) and the namespace against the URL.
fn check_type(kind: &ResourceKind, ns: Option<&str>, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    };
    let want_av = kind.gvr.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => map.insert("apiVersion".into(), json!(want_av)),
    };
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
        _ => map.insert("kind".into(), json!(kind.kind)),
    };
    let meta = meta_mut(obj).ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    match ns {
        Some(ns) => {
            if let Some(body_ns) = meta.get("namespace").and_then(Value::as_str)
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        }
        None => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

pub(super) fn commit(
    shared: &Shared,
    store: &mut Store,
    gvr: &Gvr,
    key: &str,
    obj: Value,
) -> Arc<Value> {
    let change = store.put(gvr, key, obj);
    shared.publish(store.current_rv());
    change.object.clone()
}

/// POST: stores a new object. `Err` 409 if it exists, 404 if its namespace does not.
pub(crate) fn create(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<Arc<Value>, ApiError> {
    check_type(kind, ns, &mut obj)?;
    let meta =
        meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty()
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let generated = format!("{prefix}{}", name_suffix());
        meta.insert("name".into(), json!(generated));
    }
    for server_owned in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        meta.remove(server_owned);
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_timestamp()));
    if kind.generation {
        meta.insert("generation".into(), json!(1));
    }
    if kind.kind == "Namespace" && kind.gvr.group.is_empty() {
        obj["status"] = json!({ "phase": "Active" });
    } else if kind.kind == "Pod" && kind.gvr.group.is_empty() {
        obj["status"] = json!({ "phase": "Pending", "qosClass": "BestEffort" });
    } else if kind.status_subresource
        && kind.kind != "Node"
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    server_defaults(kind, &mut obj);
    admit(kind, &mut obj, None, shared.lenient)?;
    let name = meta_str(&obj, "name").unwrap_or("").to_owned();
    let mut store = shared.store();
    if let Some(ns) = ns
        && store.get(&namespaces(), ns).is_none()
    {
        return Err(ApiError::not_found(&namespaces(), ns));
    }
    let key = key(ns, &name);
    if store.get(&kind.gvr, &key).is_some() {
        return Err(ApiError::already_exists(&kind.gvr, &name));
    }
    if kind.gvr == services() {
        let rv = store.current_rv();
        let existing = store.snapshot(&kind.gvr, "", rv).unwrap_or_default();
        alloc::on_create(&existing, &mut obj);
    }
    Ok(commit(shared, &mut store, &kind.gvr, &key, obj))
}

/// PUT: replaces an existing object. `Err` 404 if missing, 409 if the body's
/// `resourceVersion` is set and stale (an empty one means "unconditionally").
pub(crate) fn replace(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    mut obj: Value,
    part: Part,
) -> Result<Arc<Value>, ApiError> {
    check_type(kind, ns, &mut obj)?;
    let meta =
        meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => meta.insert("name".into(), json!(name)),
    };
    let mut store = shared.store();
    let key = key(ns, name);
    let old = store
        .get(&kind.gvr, &key)
        .ok_or_else(|| ApiError::not_found(&kind.gvr, name))?;
    update_locked(shared, &mut store, kind, &key, &old, obj, part)
}

fn update_locked(
    shared: &Shared,
    store: &mut Store,
    kind: &ResourceKind,
    key: &str,
    old: &Arc<Value>,
    obj: Value,
    part: Part,
) -> Result<Arc<Value>, ApiError> {
    let name = meta_str(old, "name").unwrap_or("").to_owned();
    let old_rv = meta_str(old, "resourceVersion").unwrap_or("");
    match meta_str(&obj, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != old_rv => {
            return Err(ApiError::stale(&kind.gvr, &name));
        }
        _ => {}
    }
    let mut new = match part {
        Part::Main => {
            let mut new = obj;
            if kind.status_subresource
                && let Some(m) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        }
        Part::Status => {
            let mut new = (**old).clone();
            if let Some(m) = new.as_object_mut() {
                match obj.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        }
    };
    let meta =
        meta_mut(&mut new).ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
    for server_owned in [
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old.get("metadata").and_then(|m| m.get(server_owned)) {
            Some(v) => meta.insert(server_owned.into(), v.clone()),
            None => meta.remove(server_owned),
        };
    }
    if kind.generation && spec_part(&new) != spec_part(old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(meta) = meta_mut(&mut new) {
            meta.insert("generation".into(), json!(generation + 1));
        }
    }
    if kind.gvr == services() {
        alloc::on_update(old, &mut new);
    }
    server_defaults(kind, &mut new);
    admit(kind, &mut new, Some(&**old), shared.lenient)?;
    if new == **old {
        return Ok(old.clone());
    }
    let stored = commit(shared, store, &kind.gvr, key, new);
    if meta_str(&stored, "deletionTimestamp").is_some() && !has_finalizers(&stored) {
        store.remove(&kind.gvr, key);
        shared.publish(store.current_rv());
    }
    Ok(stored)
}

/// What the real server fills in on every write: a Namespace's
/// `kubernetes.io/metadata.name` label (k8s-wire 19c), and `lastProbeTime` /
/// `lastTransitionTime` of Pod conditions as `null` when not sent (typed fields,
/// k8s-wire 18c).
fn server_defaults(kind: &ResourceKind, obj: &mut Value) {
    if !kind.gvr.group.is_empty() {
        return;
    }
    match kind.kind.as_str() {
        "Namespace" => {
            let name = meta_str(obj, "name").unwrap_or("").to_owned();
            if let Some(meta) = meta_mut(obj) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        "Pod" => {
            let conditions = obj
                .pointer_mut("/status/conditions")
                .and_then(Value::as_array_mut);
            for c in conditions.into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    for time in ["lastProbeTime", "lastTransitionTime"] {
                        c.entry(time).or_insert(Value::Null);
                    }
                }
            }
        }
        _ => {}
    }
}

pub(super) fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// PATCH: applies a patch to an existing object (or creates it for apply patches).
/// Returns the stored object and whether it was created.
pub(crate) fn patch(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    how: PatchKind,
    body: &[u8],
    part: Part,
) -> Result<(Arc<Value>, bool), ApiError> {
    let parse_err =
        |e: &dyn std::fmt::Display| ApiError::bad_request(format!("error decoding patch: {e}"));
    if how == PatchKind::Strategic && kind.origin == super::resources::KindOrigin::Custom {
        return Err(ApiError::unsupported_media_type_custom());
    }
    let (merge, ops) = match how {
        PatchKind::Merge | PatchKind::Strategic => (
            serde_json::from_slice::<Value>(body).map_err(|e| parse_err(&e))?,
            None,
        ),
        PatchKind::Apply => (
            serde_yaml_ng::from_slice::<Value>(body).map_err(|e| parse_err(&e))?,
            None,
        ),
        PatchKind::Json => (
            Value::Null,
            Some(serde_json::from_slice::<json_patch::Patch>(body).map_err(|e| parse_err(&e))?),
        ),
    };
    let key = key(ns, name);
    let mut store = shared.store();
    let Some(old) = store.get(&kind.gvr, &key) else {
        drop(store);
        if how == PatchKind::Apply && part == Part::Main {
            let mut obj = merge;
            if let Some(meta) = meta_mut(&mut obj) {
                meta.insert("name".into(), json!(name));
            }
            return create(shared, kind, ns, obj).map(|o| (o, true));
        }
        return Err(ApiError::not_found(&kind.gvr, name));
    };
    let mut doc = (*old).clone();
    match ops {
        Some(ops) => json_patch::patch(&mut doc, &ops).map_err(|e| {
            ApiError::bad_request(format!(
                "the server rejected our request due to an error in our request: {e}"
            ))
        })?,
        None if how == PatchKind::Strategic => {
            super::strategic::apply(&kind.kind, &mut doc, &merge);
        }
        None => json_patch::merge(&mut doc, &merge),
    }
    check_type(kind, ns, &mut doc)?;
    if meta_str(&doc, "name") != Some(name) {
        return Err(ApiError::bad_request(
            "metadata.name may not be changed by a patch",
        ));
    }
    update_locked(shared, &mut store, kind, &key, &old, doc, part).map(|o| (o, false))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::validate::Leniency;
    use super::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9.:]{0,9}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            let key = prop_oneof![
                Just("metadata".to_owned()),
                Just("name".to_owned()),
                Just("resourceVersion".to_owned()),
                Just("status".to_owned()),
                Just("spec".to_owned()),
                Just("endpoints".to_owned()),
                Just("addresses".to_owned()),
                Just("addressType".to_owned()),
                Just("rules".to_owned()),
                "[a-z]{1,4}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn setup() -> Shared {
        let shared = Shared::new(10, Leniency::default(), std::time::Duration::from_secs(1));
        let ns = shared.registry().get(&namespaces()).unwrap();
        create(
            &shared,
            &ns,
            None,
            json!({ "metadata": { "name": "default" } }),
        )
        .unwrap();
        shared
    }

    proptest! {
        #[test]
        fn any_body_is_stored_or_refused_with_a_4xx(body in arb_json()) {
            let shared = setup();
            for gvr in [Gvr::new("discovery.k8s.io", "v1", "endpointslices"), Gvr::new("networking.k8s.io", "v1", "ingresses")] {
                let kind = shared.registry().get(&gvr).unwrap();
                let base = json!({ "metadata": { "name": "x" }, "addressType": "IPv4", "spec": {} });
                create(&shared, &kind, Some("default"), base).unwrap();
                let bytes = serde_json::to_vec(&body).unwrap();
                let outcomes = [
                    create(&shared, &kind, Some("default"), body.clone()).map(|_| ()),
                    replace(&shared, &kind, Some("default"), "x", body.clone(), Part::Main).map(|_| ()),
                    replace(&shared, &kind, Some("default"), "x", body.clone(), Part::Status).map(|_| ()),
                    patch(&shared, &kind, Some("default"), "x", PatchKind::Merge, &bytes, Part::Main).map(|_| ()),
                    patch(&shared, &kind, Some("default"), "x", PatchKind::Json, &bytes, Part::Main).map(|_| ()),
                ];
                for outcome in outcomes {
                    if let Err(e) = outcome {
                        prop_assert!((400..500).contains(&e.code), "{e}");
                    }
                }
            }
        }
    }

    #[test]
    fn unchanged_replace_keeps_the_version_and_generation() {
        let shared = setup();
        let kind = shared
            .registry()
            .get(&Gvr::new("discovery.k8s.io", "v1", "endpointslices"))
            .unwrap();
        let obj = json!({ "metadata": { "name": "x" }, "addressType": "IPv4", "endpoints": [] });
        let first = create(&shared, &kind, Some("default"), obj.clone()).unwrap();
        let again = replace(&shared, &kind, Some("default"), "x", obj, Part::Main).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again["metadata"]["generation"], 1);
    }
}
