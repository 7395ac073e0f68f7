//! Watches the weights ConfigMap and applies every version of it. A relist is applied
//! when complete (a missing ConfigMap then means "no run-time weights"); a failed watch
//! changes nothing.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};

use super::Weights;

fn apply(weights: &Weights, cm: Option<ConfigMap>) {
    let rv = cm
        .as_ref()
        .and_then(|c| c.metadata.resource_version.clone());
    weights.apply(cm.and_then(|c| c.data).as_ref(), rv);
}

/// Runs until the task is dropped.
pub(super) async fn run(weights: Arc<Weights>) {
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", weights.store.name));
    let mut stream = watcher(weights.store.api(), config)
        .default_backoff()
        .boxed();
    let mut listed: Option<ConfigMap> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(cm)) => apply(&weights, Some(cm)),
            Ok(watcher::Event::Delete(_)) => {
                tracing::info!(configmap = %weights.store.object(), "weights ConfigMap deleted: configured weights again");
                apply(&weights, None);
            }
            Ok(watcher::Event::Init) => listed = None,
            Ok(watcher::Event::InitApply(cm)) => listed = Some(cm),
            Ok(watcher::Event::InitDone) => apply(&weights, listed.take()),
            Err(e) => {
                tracing::warn!(configmap = %weights.store.object(), error = %e, "weights watch failed; keeping the last-known weights");
            }
        }
    }
}
