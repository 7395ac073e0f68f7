//! Writes the status of podgate's Gateway API objects as users read it: a
//! GatewayClass's `Accepted`, a Gateway's `Accepted`/`Programmed` with its listeners'
//! conditions and `attachedRoutes`, and podgate's entries of each HTTPRoute's
//! `status.parents` (`Accepted`, `ResolvedRefs`, `PartiallyInvalid`) — other
//! controllers' entries are kept as they are.
//!
//! A reconciler, written by the replica that pushes (the term holder) only: whenever
//! the cluster's resolution changed, and every `RECHECK` regardless, it lists the three
//! kinds and merge-patches `/status` of each object whose status differs from the
//! Index's decision. A condition keeps its `lastTransitionTime` while its status stays;
//! HTTPRoute patches carry the `resourceVersion` they were computed from, so a
//! concurrent write by another controller makes the patch fail (409) and the next pass
//! computes again instead of dropping that controller's entry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::hub::Desired;
use podgate_core::gateway::{Condition, Resolution};
use podgate_core::model::ClusterName;

/// How often the resolution is looked at.
const INTERVAL: Duration = Duration::from_secs(1);
/// Statuses are compared with the cluster at least this often (someone may have
/// edited them).
const RECHECK: Duration = Duration::from_secs(30);

fn resource(kind: &str, plural: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk(super::gateway::GROUP, "v1", kind);
    ApiResource::from_gvk_with_plural(&gvk, plural)
}

/// Per HTTPRoute (`namespace`, `name`) of a cluster that some LB leaves out, the
/// message naming those LBs.
pub(crate) type RoutesLeftOut =
    Arc<dyn Fn(&ClusterName) -> std::collections::BTreeMap<(String, String), String> + Send + Sync>;

/// The condition an HTTPRoute parent carries when some LB leaves its hosts out (the
/// domain prefix marks it as podgate's, as the specification asks of
/// implementation-specific conditions).
const SERVED_BY_ALL: &str = "podgate.io/ServedByAllLBs";

/// What one cluster's status writer works with.
pub(crate) struct Writer {
    pub(crate) cluster: ClusterName,
    pub(crate) client: Client,
    pub(crate) desired: Arc<Desired>,
    /// podgate's GatewayClass controller name.
    pub(crate) controller_name: String,
    pub(crate) left_out: Option<RoutesLeftOut>,
}

/// Runs until dropped.
pub(crate) async fn run(w: Writer, term: watch::Receiver<Option<u64>>) {
    let Writer {
        cluster,
        client,
        desired,
        controller_name,
        left_out,
    } = w;
    let mut last: Option<Arc<Resolution>> = None;
    let mut checked = Instant::now();
    loop {
        tokio::time::sleep(INTERVAL).await;
        if term.borrow().is_none() {
            last = None; // a new term compares everything again
            continue;
        }
        let Some(now) = desired.read(|i| i.gateway_resolution(&cluster)) else {
            continue;
        };
        let same = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &now));
        if same && checked.elapsed() < RECHECK {
            continue;
        }
        checked = Instant::now();
        let left_out = left_out.as_ref().map(|f| f(&cluster)).unwrap_or_default();
        match reconcile(&client, &now, &controller_name, &left_out).await {
            Ok(written) => {
                if written > 0 {
                    tracing::debug!(%cluster, written, "Gateway API status written");
                }
                last = Some(now);
            }
            Err(e) => {
                crate::logging::warn_limited!(%cluster, error = %crate::logging::causes(&e), "Gateway API status not written; trying again");
                last = None;
            }
        }
    }
}

/// One pass over the three kinds; how many statuses were written.
async fn reconcile(
    client: &Client,
    r: &Resolution,
    controller_name: &str,
    left_out: &std::collections::BTreeMap<(String, String), String>,
) -> Result<usize, kube::Error> {
    let mut written = 0;
    let classes: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("GatewayClass", "gatewayclasses"));
    for obj in classes.list(&ListParams::default()).await?.items {
        let Some(want) = obj.metadata.name.as_ref().and_then(|n| r.classes.get(n)) else {
            continue;
        };
        let current = &obj.data["status"];
        let conditions = timed(&want.conditions, &current["conditions"]);
        if differs(&conditions, &current["conditions"]) {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let patch = json!({"status": {"conditions": conditions}});
            patch_status(&classes, &name, &patch).await?;
            written += 1;
        }
    }
    let gateways: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("Gateway", "gateways"));
    for obj in gateways.list(&ListParams::default()).await?.items {
        let key = key_of(&obj);
        let Some(want) = r.gateways.get(&key) else {
            continue;
        };
        let current = &obj.data["status"];
        let conditions = timed(&want.conditions, &current["conditions"]);
        let listeners: Vec<Value> = want
            .listeners
            .iter()
            .map(|l| {
                let before = current["listeners"]
                    .as_array()
                    .and_then(|ls| ls.iter().find(|c| c["name"] == l.name.as_str()))
                    .map_or(&Value::Null, |c| &c["conditions"]);
                json!({
                    "name": l.name,
                    "supportedKinds": l.supported_kinds,
                    "attachedRoutes": l.attached_routes,
                    "conditions": timed(&l.conditions, before),
                })
            })
            .collect();
        let status = json!({"conditions": conditions, "listeners": listeners});
        let shown = json!({"conditions": current["conditions"], "listeners": current["listeners"]});
        if differs(&status, &shown) {
            let api = namespaced(client, "Gateway", "gateways", &key.0);
            patch_status(&api, &key.1, &json!({"status": status})).await?;
            written += 1;
        }
    }
    let routes: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("HTTPRoute", "httproutes"));
    for obj in routes.list(&ListParams::default()).await?.items {
        let key = key_of(&obj);
        let shown = obj.data["status"]["parents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ours = r.routes.get(&key).map(Vec::as_slice).unwrap_or_default();
        // Other controllers' entries stay as they are, in place; podgate's follow.
        let mut parents: Vec<Value> = shown
            .iter()
            .filter(|p| p["controllerName"] != controller_name)
            .cloned()
            .collect();
        for p in ours {
            let mut conditions = p.conditions.clone();
            if let Some(message) = left_out.get(&key) {
                let mut c =
                    Condition::new(SERVED_BY_ALL, false, "UnsupportedByLB", message.clone());
                c.observed_generation = p.conditions.first().map_or(0, |c| c.observed_generation);
                conditions.push(c);
            }
            let parent_ref = serde_json::to_value(&p.parent_ref).unwrap_or(Value::Null);
            let before = shown
                .iter()
                .find(|s| {
                    s["controllerName"] == controller_name
                        && same_parent(&s["parentRef"], &parent_ref)
                })
                .map_or(&Value::Null, |s| &s["conditions"]);
            parents.push(json!({
                "parentRef": parent_ref,
                "controllerName": p.controller_name,
                "conditions": timed(&conditions, before),
            }));
        }
        if differs(&Value::Array(parents.clone()), &Value::Array(shown)) {
            let api = namespaced(client, "HTTPRoute", "httproutes", &key.0);
            let patch = json!({
                "metadata": {"resourceVersion": obj.metadata.resource_version},
                "status": {"parents": parents},
            });
            patch_status(&api, &key.1, &patch).await?;
            written += 1;
        }
    }
    Ok(written)
}

fn namespaced(client: &Client, kind: &str, plural: &str, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource(kind, plural))
}

fn key_of(obj: &DynamicObject) -> (String, String) {
    (
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    )
}

async fn patch_status(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &Value,
) -> Result<(), kube::Error> {
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile (409) or deleted (404): the next pass decides again.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// `conditions` with `lastTransitionTime`: kept from `before` where the condition of
/// that type had the same status, now otherwise.
fn timed(conditions: &[Condition], before: &Value) -> Vec<Value> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    conditions
        .iter()
        .map(|c| {
            let kept = before
                .as_array()
                .and_then(|b| {
                    b.iter()
                        .find(|o| o["type"] == c.kind && o["status"] == c.status)
                })
                .and_then(|o| o.get("lastTransitionTime").cloned());
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["lastTransitionTime"] = kept.unwrap_or_else(|| json!(now.to_string()));
            v
        })
        .collect()
}

/// Whether two statuses differ other than in `lastTransitionTime` (and in fields the
/// API server fills in that podgate leaves out, which are null here).
fn differs(a: &impl serde::Serialize, b: &Value) -> bool {
    let a = serde_json::to_value(a).unwrap_or(Value::Null);
    normalized(a) != normalized(b.clone())
}

fn normalized(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, v)| k != "lastTransitionTime" && !v.is_null())
                .map(|(k, v)| (k, normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalized).collect()),
        other => other,
    }
}

/// Two parentRefs name the same parent (the API server defaults group and kind).
fn same_parent(a: &Value, b: &Value) -> bool {
    let field = |v: &Value, f: &str, default: &str| {
        v[f].as_str()
            .map_or_else(|| default.to_owned(), str::to_owned)
    };
    ["name", "namespace", "sectionName"]
        .iter()
        .all(|f| field(a, f, "") == field(b, f, ""))
        && a["port"] == b["port"]
        && field(a, "kind", "Gateway") == field(b, "kind", "Gateway")
}
