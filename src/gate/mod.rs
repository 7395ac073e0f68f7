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
