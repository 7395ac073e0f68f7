//! The pod readiness gate `podgate.io/lb-registered`: a rollout never outruns the LB.
//!
//! A pod that carries the gate (added by the webhook, `webhook.rs`, or written into
//! its template by hand) is Ready only once podgate says so. Per cluster: `pods.rs`
//! watches the opted-in namespaces (label `podgate.io/readiness-gate-inject=enabled`)
//! and their gated pods, and tells the Index which of them have ready containers, so
//! that their endpoints are registered before the pods are Ready; `writer.rs` sets the
//! condition True once every LB target acknowledged the endpoint (or after
//! `readiness_gate.timeout`, with a Warning Event). The Index stays pure: the gate's
//! condition is a consequence of the targets' acknowledgements, never a routing input.

mod pods;
pub mod webhook;
mod writer;

use std::sync::Arc;

use kube::Client;
use parking_lot::Mutex;
use tokio::task::JoinSet;

pub(crate) use pods::Gated;
pub use pods::{CONDITION, INJECT_LABEL};

use crate::hub::Desired;
use crate::sync::{TargetStatus, Term};
use podgate_core::model::ClusterName;

/// What every cluster's gate shares.
#[derive(Clone)]
pub(crate) struct GateOptions {
    pub(crate) desired: Arc<Desired>,
    pub(crate) targets: Vec<Arc<Mutex<TargetStatus>>>,
    pub(crate) term: Term,
    pub(crate) timeout: std::time::Duration,
    pub(crate) controller: String,
    /// Publish the timeout's Warning Event.
    pub(crate) events: bool,
}

/// `GET /v1/readiness-gate`: one gated pod as the admin view shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GatedPodView {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub address: Option<std::net::IpAddr>,
    /// `ready`, `not ready (waiting for the LB)`, `not ready (containers)`, `terminating`.
    pub state: &'static str,
    /// The gate condition's reason and message, as the pod shows them.
    pub reason: String,
    pub message: String,
}

/// `GET /v1/readiness-gate`: the opted-in namespaces and gated pods of every cluster,
/// waiting ones first.
pub(crate) fn view(gates: &[(ClusterName, Arc<Gated>)]) -> serde_json::Value {
    let mut namespaces = serde_json::Map::new();
    for (cluster, gated) in gates {
        namespaces.insert(cluster.to_string(), gated.namespaces().into());
    }
    let pods = pod_views(gates);
    serde_json::json!({ "condition": CONDITION, "namespaces": namespaces, "pods": pods })
}

/// Every gated pod of every cluster, waiting ones first.
pub(crate) fn pod_views(gates: &[(ClusterName, Arc<Gated>)]) -> Vec<GatedPodView> {
    let mut pods = Vec::new();
    for (cluster, gated) in gates {
        for ((namespace, name), v) in gated.pods() {
            pods.push(GatedPodView {
                cluster: cluster.to_string(),
                namespace,
                name,
                address: v.address,
                state: v.state(),
                reason: v.reason.clone(),
                message: v.message.clone(),
            });
        }
    }
    pods.sort_by(|a, b| {
        let waiting = |p: &GatedPodView| p.state != "not ready (waiting for the LB)";
        (waiting(a), &a.cluster, &a.namespace, &a.name).cmp(&(
            waiting(b),
            &b.cluster,
            &b.namespace,
            &b.name,
        ))
    });
    pods
}

/// One cluster's gated pods by state (every state present), and timeouts so far.
#[derive(Clone, Debug)]
pub(crate) struct GateCounts {
    pub(crate) cluster: String,
    pub(crate) by_state: Vec<(&'static str, usize)>,
    pub(crate) timeouts: u64,
}

/// The counts of every cluster, for the metrics.
pub(crate) fn counts(gates: &[(ClusterName, Arc<Gated>)]) -> Vec<GateCounts> {
    gates
        .iter()
        .map(|(cluster, gated)| {
            let pods = gated.pods();
            let by_state = pods::PodView::STATES
                .iter()
                .map(|s| (*s, pods.iter().filter(|(_, v)| v.state() == *s).count()))
                .collect();
            let timeouts = gated.timeouts.load(std::sync::atomic::Ordering::Relaxed);
            GateCounts {
                cluster: cluster.to_string(),
                by_state,
                timeouts,
            }
        })
        .collect()
}

/// Starts one cluster's pod watches and its condition writer.
pub(crate) fn spawn(
    cluster: ClusterName,
    client: Client,
    options: &GateOptions,
    tasks: &mut JoinSet<()>,
) -> Arc<Gated> {
    let gated = Arc::new(Gated::default());
    tasks.spawn(pods::run(
        client.clone(),
        cluster.clone(),
        options.desired.clone(),
        gated.clone(),
    ));
    let writer = writer::Writer {
        cluster,
        client,
        desired: options.desired.clone(),
        gated: gated.clone(),
        targets: options.targets.clone(),
        term: options.term.clone(),
        timeout: options.timeout,
        controller: options.controller.clone(),
        events: options.events,
    };
    tasks.spawn(writer.run());
    gated
}
