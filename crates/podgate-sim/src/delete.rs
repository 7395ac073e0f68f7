//! Deletes of the simulated Kubernetes API server (a test double).
//!
//! Owns DELETE of one object (preconditions on resourceVersion / uid, finalizers that
//! hold a deletion as `deletionTimestamp`, a Namespace taking its contents with it)
//! and DELETE of a collection by selector. Deletes are immediate otherwise: no grace
//! periods, no garbage collection of owned objects.

use std::sync::Arc;

use serde_json::{Value, json};

use super::meta::{meta_mut, meta_str, now_timestamp};
use super::resources::ResourceKind;
use super::selector::{FieldSelector, LabelSelector};
use super::state::Shared;
use super::status::ApiError;
use super::store::key;
use super::write::{commit, has_finalizers, namespaces};

/// DELETE: removes an object at once and returns its last state, or, when it has
/// finalizers, only sets its `deletionTimestamp` and returns it marked. Honours
/// `preconditions.resourceVersion` and `preconditions.uid` of the DeleteOptions body.
/// Deleting a Namespace deletes everything in it first.
pub(crate) fn delete(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    options: &Value,
) -> Result<Arc<Value>, ApiError> {
    let registry = shared.registry();
    let mut store = shared.store();
    let key = key(ns, name);
    let old = store
        .get(&kind.gvr, &key)
        .ok_or_else(|| ApiError::not_found(&kind.gvr, name))?;
    for (field, label) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
        let want = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str);
        let have = meta_str(&old, field).unwrap_or("");
        if let Some(want) = want
            && want != have
        {
            let why = format!(
                "Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
            );
            return Err(ApiError::conflict(&kind.gvr, name, &why));
        }
    }
    if kind.gvr == namespaces() {
        let prefix = format!("{name}/");
        for gv in registry.group_versions() {
            for k in registry
                .in_group_version(&gv.0, &gv.1)
                .iter()
                .filter(|k| k.namespaced)
            {
                let rv = store.current_rv();
                let keys: Vec<String> = store
                    .snapshot(&k.gvr, &prefix, rv)
                    .map(|s| s.into_keys().collect())
                    .unwrap_or_default();
                for key in keys {
                    store.remove(&k.gvr, &key);
                }
            }
        }
    }
    if has_finalizers(&old) {
        // Graceful: mark it; the update that removes the last finalizer deletes it.
        if meta_str(&old, "deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut marked = (*old).clone();
        if let Some(meta) = meta_mut(&mut marked) {
            meta.insert("deletionTimestamp".into(), json!(now_timestamp()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        return Ok(commit(shared, &mut store, &kind.gvr, &key, marked));
    }
    store.remove(&kind.gvr, &key);
    shared.publish(store.current_rv());
    Ok(old)
}

/// DELETE on a collection: removes every object of `kind` in `ns` (all namespaces when
/// `None`) that the selectors match, and returns them as a list, like the real server.
pub(crate) fn delete_collection(
    shared: &Shared,
    kind: &ResourceKind,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Value {
    let prefix = ns.map(|n| format!("{n}/")).unwrap_or_default();
    let mut store = shared.store();
    let rv = store.current_rv();
    let doomed: Vec<(String, Arc<Value>)> = store
        .snapshot(&kind.gvr, &prefix, rv)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, o)| labels.matches(o) && fields.matches(o))
        .collect();
    let mut items = Vec::new();
    for (key, obj) in doomed {
        store.remove(&kind.gvr, &key);
        let mut item = (*obj).clone();
        if let Some(m) = item.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        items.push(item);
    }
    shared.publish(store.current_rv());
    json!({
        "kind": kind.list_kind(),
        "apiVersion": kind.gvr.api_version(),
        "metadata": { "resourceVersion": store.current_rv().to_string() },
        "items": items,
    })
}
