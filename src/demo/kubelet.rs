//! A test double for what a real cluster does around pods and that the simulated API
//! server does not (no kubelet, k8s-wire 18b): `Kubelet` computes each pod's `Ready`
//! condition from `ContainersReady` and its readiness gates, and writes the app's
//! EndpointSlice from the pods the way the EndpointSlice controller does (ready =
//! Ready and not terminating; terminating = `deletionTimestamp`). It is an API client
//! like them, resyncing every 10 ms; it writes Ready with a strategic merge patch (as
//! the kubelet does, so podgate's condition stays), and stops when dropped.
//!
//! Also the pod objects themselves (`pod`, `start`, `terminate`, `gone`), a finalizer
//! standing in for the kubelet's grace period. Used by the demo and end-to-end tests.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use podgate_sim::{Gvr, SimCluster};
use serde_json::{Value, json};

pub const GATE: &str = "podgate.io/lb-registered";
/// Holds a deleted pod as terminating until the test lets it go.
const FINALIZER: &str = "podgate.test/grace-period";

pub fn pods() -> Gvr {
    Gvr::new("", "v1", "pods")
}

/// A Namespace, opted in to the readiness gate or not.
pub fn namespace(sim: &SimCluster, name: &str, opted_in: bool) {
    let labels = if opted_in {
        json!({ "podgate.io/readiness-gate-inject": "enabled" })
    } else {
        json!({})
    };
    sim.apply_json(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } }))
        .unwrap();
}

/// Creates a pod of `app` (Pending, no IP yet), carrying podgate's gate when `gated`.
pub fn pod(sim: &SimCluster, ns: &str, name: &str, app: &str, gated: bool) {
    let gates = if gated {
        json!([{ "conditionType": GATE }])
    } else {
        json!([])
    };
    sim.apply_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "labels": { "app": app }, "finalizers": [FINALIZER] },
        "spec": { "readinessGates": gates, "containers": [{ "name": "web", "image": "web" }] },
    }))
    .unwrap();
}

/// The kubelet started the pod's containers and its readiness probe passes.
pub async fn start(sim: &SimCluster, ns: &str, name: &str, ip: &str) {
    let api: Api<Pod> = Api::namespaced(sim.client().unwrap(), ns);
    let status = json!({ "status": {
        "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }],
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "ContainersReady", "status": "True" },
        ],
    } });
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .unwrap();
}

/// The pod is being deleted: terminating until [`gone`].
pub fn terminate(sim: &SimCluster, ns: &str, name: &str) {
    sim.delete(&pods(), Some(ns), name).unwrap();
}

/// Its grace period is over: the pod object goes.
pub fn gone(sim: &SimCluster, ns: &str, name: &str) {
    if let Some(mut pod) = sim.get(&pods(), Some(ns), name) {
        pod["metadata"]["finalizers"] = json!([]);
        // Without its status: the write that removes the last finalizer deletes it.
        pod.as_object_mut().unwrap().remove("status");
        sim.apply_json(pod).unwrap();
    }
}

/// The gate condition of a pod: `(status, reason, message)`.
pub fn gate(sim: &SimCluster, ns: &str, name: &str) -> Option<(String, String, String)> {
    let pod = sim.get(&pods(), Some(ns), name)?;
    let c = condition(&pod, GATE)?;
    let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
    Some((s("status"), s("reason"), s("message")))
}

pub fn is_ready(sim: &SimCluster, ns: &str, name: &str) -> bool {
    sim.get(&pods(), Some(ns), name)
        .and_then(|p| condition(&p, "Ready").map(|c| c["status"] == "True"))
        .unwrap_or(false)
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// See the module documentation. Dropping it stops it.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    /// Keeps Ready and the EndpointSlice `{service}-pods` of Service `service` (one port
    /// `http` on `port`) in step with the pods of `ns` labelled `app`, through the API
    /// as the real ones do.
    pub fn start(sim: &SimCluster, ns: &str, app: &str, service: &str, port: u16) -> Self {
        let client = sim.client().unwrap();
        let (ns, app, service) = (ns.to_owned(), app.to_owned(), service.to_owned());
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let slices: Api<EndpointSlice> = Api::namespaced(client, &ns);
            let name = format!("{service}-pods");
            let mut written: Option<EndpointSlice> = None;
            loop {
                let listed = pods
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await;
                if let Ok(listed) = listed {
                    let mut slice =
                        podgate_sim::objects::slice(&ns, &name, &service).port("http", port);
                    for p in &listed.items {
                        let p = serde_json::to_value(p).unwrap();
                        slice = sync_pod(&pods, &p, slice).await;
                    }
                    let slice = slice.build();
                    if written.as_ref() != Some(&slice) {
                        let apply = PatchParams::apply("endpointslice-controller").force();
                        if slices
                            .patch(&name, &apply, &Patch::Apply(&slice))
                            .await
                            .is_ok()
                        {
                            written = Some(slice);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { task }
    }
}

/// Writes one pod's Ready when it is due, and adds its endpoint to `slice`.
async fn sync_pod(
    api: &Api<Pod>,
    p: &Value,
    slice: podgate_sim::objects::SliceBuilder,
) -> podgate_sim::objects::SliceBuilder {
    let name = p["metadata"]["name"].as_str().unwrap_or("");
    let containers = condition(p, "ContainersReady").is_some_and(|c| c["status"] == "True");
    let gates_true = p
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|g| {
            let t = g["conditionType"].as_str().unwrap_or("");
            condition(p, t).is_some_and(|c| c["status"] == "True")
        });
    let ready = containers && gates_true;
    let Some(ip) = p.pointer("/status/podIP").and_then(Value::as_str) else {
        return slice;
    };
    let shown = condition(p, "Ready").is_some_and(|c| c["status"] == "True");
    if ready != shown {
        let status = json!({ "status": { "conditions": [
            { "type": "Ready", "status": if ready { "True" } else { "False" } },
        ] } });
        let _ = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
            .await;
    }
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        slice.terminating(ip)
    } else if ready {
        slice.ready(ip)
    } else {
        slice.not_ready(ip)
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}
