//! The Index's diagnostics → Kubernetes Events on the objects that caused them.
//! Deduplicated (each distinct problem is published once while it lasts) and
//! rate-limited (at most one pass per interval, a bounded number per pass).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::hub::Desired;
use podgate_core::index::{Kind, Report};
use podgate_core::model::ClusterName;

/// How often diagnostics are compared with what was published.
const INTERVAL: Duration = Duration::from_secs(2);
/// Events published per pass at most; the rest wait for the next pass.
const PER_PASS: usize = 20;

fn reference(report: &Report) -> ObjectReference {
    let api_version = match report.object.kind {
        Kind::Ingress | Kind::IngressClass => "networking.k8s.io/v1",
        Kind::EndpointSlice => "discovery.k8s.io/v1",
        Kind::Service | Kind::Secret | Kind::Namespace => "v1",
        Kind::GatewayClass | Kind::Gateway | Kind::HTTPRoute => "gateway.networking.k8s.io/v1",
        Kind::ReferenceGrant => "gateway.networking.k8s.io/v1beta1",
    };
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(report.object.kind.to_string()),
        namespace: (!report.object.namespace.is_empty())
            .then(|| report.object.namespace.to_string()),
        name: Some(report.object.name.to_string()),
        ..ObjectReference::default()
    }
}

/// Reports of problems the Index does not know (e.g. items an LB refused) about
/// objects of one cluster.
pub(crate) type MoreReports = Arc<dyn Fn(&ClusterName) -> Vec<Report> + Send + Sync>;

/// Publishes Warning Events for `cluster`'s diagnostics, and for `more` reports, until
/// the task is dropped.
pub(crate) async fn run(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    controller: String,
    more: Option<MoreReports>,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller,
            instance: None,
        },
    );
    let mut published: BTreeSet<Report> = BTreeSet::new();
    let mut diagnostics: BTreeSet<Report> = BTreeSet::new();
    let mut seen_generation = None;
    loop {
        tokio::time::sleep(INTERVAL).await;
        // Diagnostics cost a pass over every Ingress: only when something changed.
        let generation = desired.diagnostics_generation();
        if seen_generation != Some(generation) {
            diagnostics = desired
                .read(podgate_core::index::Index::diagnostics)
                .into_iter()
                .filter(|r| r.object.cluster == cluster)
                .collect();
            seen_generation = Some(generation);
        }
        let more: BTreeSet<Report> = more
            .as_ref()
            .map(|m| m(&cluster))
            .unwrap_or_default()
            .into_iter()
            .collect();
        // Problems that went away may be reported again if they come back.
        published.retain(|r| diagnostics.contains(r) || more.contains(r));
        // What is not published yet (the rate limit, API errors) waits for a later pass.
        let pending: Vec<Report> = diagnostics
            .iter()
            .chain(&more)
            .filter(|r| !published.contains(*r))
            .cloned()
            .collect();
        for report in pending.iter().take(PER_PASS) {
            tracing::warn!(object = %report.object, reason = report.diagnostic.reason, "{}", report.diagnostic.message);
            let event = Event {
                type_: EventType::Warning,
                reason: report.diagnostic.reason.to_owned(),
                note: Some(report.diagnostic.message.chars().take(1000).collect()),
                action: "Route".to_owned(),
                secondary: None,
            };
            match recorder.publish(&event, &reference(report)).await {
                Ok(()) => {
                    published.insert(report.clone());
                }
                Err(e) => {
                    tracing::debug!(%cluster, error = %e, "could not publish Event");
                }
            }
        }
    }
}
