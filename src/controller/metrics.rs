//! Prometheus metrics of the controller, rendered from current state at scrape time.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cluster::ClusterStatus;
use crate::sync::{SyncMetrics, TargetState, TargetStatus};
use podgate_core::index::Hold;
use podgate_core::model::{EndpointState, Upstream};

pub(crate) struct Inputs {
    pub(crate) clusters: Vec<ClusterStatus>,
    pub(crate) targets: Vec<TargetStatus>,
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    pub(crate) sync: SyncMetrics,
    pub(crate) confirm_after: std::time::Duration,
    /// Holds (hold-down) in force.
    pub(crate) holds: Vec<Hold>,
    /// Whether this replica pushes to the LBs (leads and has listed).
    pub(crate) pushing: bool,
    /// Per cluster: gated pods by state, and gates set by the timeout.
    pub(crate) gates: Vec<crate::gate::GateCounts>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OneCluster {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    target: String,
    /// `LbError::metric_label` (transient, rejected, fenced) for failures; for quarantined
    /// items, the kind of item (upstream, certificate, routes).
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    cluster: String,
    state: String,
}

pub(crate) fn render(inputs: &Inputs) -> String {
    let mut root = Registry::default();
    crate::process_metrics::register(&mut root, "controller");
    let registry = root.sub_registry_with_prefix("podgate");
    let clusters = Family::<ClusterLabels, Gauge>::default();
    for c in &inputs.clusters {
        clusters
            .get_or_create(&ClusterLabels {
                cluster: c.name.clone(),
                state: c.state.as_str().to_owned(),
            })
            .set(1);
    }
    registry.register(
        "cluster_state",
        "Cluster watch state (1 for the current state)",
        clusters,
    );

    let lists = Family::<OneCluster, Counter>::default();
    let errors = Family::<OneCluster, Counter>::default();
    for c in &inputs.clusters {
        let l = OneCluster {
            cluster: c.name.clone(),
        };
        lists.get_or_create(&l).inc_by(c.lists);
        errors.get_or_create(&l).inc_by(c.errors);
    }
    registry.register(
        "cluster_lists",
        "Completed lists per cluster (first lists and relists)",
        lists,
    );
    registry.register(
        "cluster_watch_errors",
        "Failed watches and liveness probes per cluster",
        errors,
    );
    registry.register(
        "convergence_seconds",
        "From receiving a watch event to the LB acknowledging the push that carried it",
        inputs.sync.convergence.clone(),
    );

    register_targets(registry, &inputs.targets);

    let endpoints = Family::<EndpointLabels, Gauge>::default();
    for e in inputs.upstreams.iter().flat_map(|u| &u.endpoints) {
        let state = match e.state {
            EndpointState::Active => "active",
            EndpointState::Draining => "draining",
        };
        endpoints
            .get_or_create(&EndpointLabels {
                cluster: e.cluster.to_string(),
                state: state.to_owned(),
            })
            .inc();
    }
    registry.register(
        "endpoints",
        "Registered endpoints by cluster and state",
        endpoints,
    );
    let upstreams = Gauge::<i64>::default();
    upstreams.set(i64::try_from(inputs.upstreams.len()).unwrap_or(i64::MAX));
    registry.register("upstreams", "Upstreams in the desired state", upstreams);
    let pushing = Gauge::<i64>::default();
    pushing.set(i64::from(inputs.pushing));
    registry.register(
        "pushing",
        "1 while this replica pushes to the LBs (it holds the leader Lease, if leader \
         election is on, and every cluster has listed)",
        pushing,
    );

    register_failover(registry, inputs);
    register_gates(registry, &inputs.gates);

    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &root).is_err() {
        out.clear();
    }
    out
}

/// The readiness gate: pods by state, timeouts.
fn register_gates(registry: &mut Registry, gates: &[crate::gate::GateCounts]) {
    let pods = Family::<ClusterLabels, Gauge>::default();
    let timeouts = Family::<OneCluster, Counter>::default();
    for crate::gate::GateCounts {
        cluster,
        by_state,
        timeouts: timed_out,
    } in gates
    {
        for (state, n) in by_state {
            pods.get_or_create(&ClusterLabels {
                cluster: cluster.clone(),
                state: (*state).to_owned(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        timeouts
            .get_or_create(&OneCluster {
                cluster: cluster.clone(),
            })
            .inc_by(*timed_out);
    }
    registry.register(
        "readiness_gate_pods",
        "Pods carrying podgate's readiness gate in opted-in namespaces, by state",
        pods,
    );
    registry.register(
        "readiness_gate_timeouts",
        "Readiness gates set because not every LB target acknowledged the pod within readiness_gate.timeout",
        timeouts,
    );
}

/// Pushes, failures by kind of error, and whether each LB instance is in sync.
fn register_targets(registry: &mut Registry, targets: &[TargetStatus]) {
    let pushes = Family::<TargetLabels, Counter>::default();
    let failures = Family::<FailureLabels, Counter>::default();
    let in_sync = Family::<TargetLabels, Gauge>::default();
    let quarantined = Family::<FailureLabels, Gauge>::default();
    for t in targets {
        for kind in crate::sync::Item::KINDS {
            let n = t
                .quarantined
                .iter()
                .filter(|q| q.item.kind() == kind)
                .count();
            quarantined
                .get_or_create(&FailureLabels {
                    target: t.name.clone(),
                    kind: kind.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let l = TargetLabels {
            target: t.name.clone(),
        };
        pushes.get_or_create(&l).inc_by(t.pushes);
        // Every kind at 0 first: `rate()` and alerts see a failure's first increase.
        for kind in crate::lb::LbError::METRIC_LABELS {
            let _ = failures.get_or_create(&FailureLabels {
                target: t.name.clone(),
                kind: kind.to_owned(),
            });
        }
        for (kind, n) in &t.failures_by_kind {
            let l = FailureLabels {
                target: t.name.clone(),
                kind: (*kind).to_owned(),
            };
            failures.get_or_create(&l).inc_by(*n);
        }
        in_sync
            .get_or_create(&l)
            .set(i64::from(t.state == TargetState::InSync));
    }
    registry.register("lb_pushes", "Pushes accepted by each LB instance", pushes);
    registry.register(
        "lb_push_failures",
        "Pushes that failed, per LB instance and kind of error",
        failures,
    );
    registry.register(
        "lb_quarantined_items",
        "Items an LB instance refused, left out until they change, per kind of item (upstream, certificate, routes)",
        quarantined,
    );
    registry.register(
        "lb_in_sync",
        "1 when the LB instance holds the desired state",
        in_sync,
    );
}

/// Hold-down and floor-guard gauges, per cluster.
fn register_failover(registry: &mut Registry, inputs: &Inputs) {
    let held = Family::<OneCluster, Gauge>::default();
    let guarded = Family::<OneCluster, Gauge>::default();
    // How long a withdrawal has been held (0: none), and when a fresh list should
    // have confirmed it: an alert compares the two, a hold outliving it is stuck.
    let held_for = Family::<OneCluster, Gauge<f64, AtomicU64>>::default();
    let confirm_after = Family::<OneCluster, Gauge<f64, AtomicU64>>::default();
    let now_ms = crate::clock::now_ms();
    for c in &inputs.clusters {
        let l = OneCluster {
            cluster: c.name.clone(),
        };
        held.get_or_create(&l).set(0);
        let withdrawn = c.guarded_relist.as_ref().map_or(0, |g| g.withdrawn);
        guarded
            .get_or_create(&l)
            .set(i64::try_from(withdrawn).unwrap_or(i64::MAX));
        #[allow(clippy::cast_precision_loss)] // milliseconds fit f64 exactly for ages of years
        let seconds = |ms: u64| ms as f64 / 1000.0;
        let (held_ms, confirm_ms) = c.guarded_relist.as_ref().map_or(
            (
                0,
                u64::try_from(inputs.confirm_after.as_millis()).unwrap_or(u64::MAX),
            ),
            |g| (now_ms.saturating_sub(g.since_ms), g.confirm_after_ms),
        );
        held_for.get_or_create(&l).set(seconds(held_ms));
        confirm_after.get_or_create(&l).set(seconds(confirm_ms));
    }
    registry.register(
        "guarded_withdrawal_held_seconds",
        "How long the floor guard has held a withdrawal, per cluster (0: none held)",
        held_for,
    );
    registry.register(
        "guarded_withdrawal_confirm_after_seconds",
        "When the held withdrawal should be confirmed by a fresh list (confirm_after), per cluster",
        confirm_after,
    );
    for h in &inputs.holds {
        held.get_or_create(&OneCluster {
            cluster: h.cluster.to_string(),
        })
        .inc();
    }
    registry.register(
        "held_upstreams",
        "Upstreams a recovered cluster is held out of (hold-down), per cluster",
        held,
    );
    registry.register(
        "guarded_withdrawal_endpoints",
        "Endpoints a withdrawal held by the floor guard would remove, per cluster",
        guarded,
    );
}
