//! `GET /v1/overview`: what an operator looks at first — problems first, then clusters,
//! LB targets, holds, migrations and the latest pushes (the timeline).

use serde::Serialize;

use super::super::admin::{AdminState, ClusterView};
use crate::cluster::ClusterState;
use crate::sync::{AuditEntry, TargetState, TargetStatus};
use podgate_core::index::Hold;

/// One problem, worst first.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Problem {
    /// `critical` or `warning`.
    pub(crate) severity: &'static str,
    /// What the problem is about: `cluster tke`, `target haproxy`, …
    pub(crate) subject: String,
    pub(crate) message: String,
    /// When it began (ms since the Unix epoch), when known.
    pub(crate) since_ms: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct TargetView {
    #[serde(flatten)]
    pub(crate) status: TargetStatus,
    /// Desired-state writes the target does not hold yet.
    pub(crate) lag: u64,
    /// Milliseconds since the target last acknowledged a push.
    pub(crate) last_ack_ago_ms: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct Overview {
    pub(crate) generation: u64,
    pub(crate) version: u64,
    pub(crate) pushing: bool,
    pub(crate) problems: Vec<Problem>,
    pub(crate) clusters: Vec<ClusterView>,
    pub(crate) targets: Vec<TargetView>,
    pub(crate) holds: Vec<Hold>,
    pub(crate) weights: super::super::weights::WeightsView,
    pub(crate) counts: Counts,
    /// The latest pushes, newest first.
    pub(crate) timeline: Vec<AuditEntry>,
    /// Whether writes need a login (`token`), are open on loopback (`loopback`) or off.
    pub(crate) writes: &'static str,
}

#[derive(Serialize)]
pub(crate) struct Counts {
    pub(crate) hosts: usize,
    pub(crate) upstreams: usize,
    pub(crate) endpoints: usize,
    pub(crate) diagnostics: usize,
    pub(crate) gated_waiting: usize,
}

const TIMELINE: usize = 50;

pub(crate) fn overview(state: &AdminState) -> Overview {
    let version = state.desired.version();
    let snapshot = state.desired.snapshot();
    let clusters = state.clusters();
    let targets: Vec<TargetView> = state
        .targets
        .iter()
        .map(|t| {
            let t = t.lock();
            TargetView {
                lag: version.saturating_sub(t.programmed),
                last_ack_ago_ms: t
                    .last_ack
                    .map(|a| u64::try_from(a.elapsed().as_millis()).unwrap_or(u64::MAX)),
                status: t.clone(),
            }
        })
        .collect();
    let holds = state.desired.read(podgate_core::index::Index::holds);
    let diagnostics = state.desired.read(podgate_core::index::Index::diagnostics);
    let routes = snapshot.route_table();
    let upstreams = snapshot.upstream_list();
    let gated = crate::gate::view(&state.gates);
    let gated_waiting = gated["pods"].as_array().map_or(0, |p| {
        p.iter()
            .filter(|p| p["state"] == "not ready (waiting for the LB)")
            .count()
    });
    let problems = problems(&clusters, &targets, &holds, &diagnostics);
    let timeline = state.audit.latest(TIMELINE);
    Overview {
        generation: snapshot.generation,
        version,
        pushing: state.term.borrow().is_some(),
        counts: Counts {
            hosts: routes.hosts.len(),
            upstreams: upstreams.len(),
            endpoints: upstreams.iter().map(|u| u.endpoints.len()).sum(),
            diagnostics: diagnostics.len(),
            gated_waiting,
        },
        problems,
        clusters,
        targets,
        holds,
        weights: state.weights.view(),
        timeline,
        writes: state.weights.writes_mode(),
    }
}

/// Every problem worth a look, critical ones first.
fn problems(
    clusters: &[ClusterView],
    targets: &[TargetView],
    holds: &[Hold],
    diagnostics: &[podgate_core::index::Report],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for c in clusters {
        let s = &c.status;
        if let Some(g) = &s.guarded_relist {
            problems.push(Problem {
                severity: "warning",
                subject: format!("cluster {}", s.name),
                message: format!(
                    "the floor guard holds a {} relist that would withdraw {} of {} endpoints, until a fresh list confirms it ({} s after it was held)",
                    g.kind,
                    g.withdrawn,
                    g.before,
                    g.confirm_after_ms / 1000
                ),
                since_ms: Some(g.since_ms),
            });
        }
        let (severity, message) = match s.state {
            ClusterState::Synced => continue,
            ClusterState::NeverSynced => (
                "critical",
                "has not listed yet: nothing of it is pushed".to_owned(),
            ),
            ClusterState::Stale => (
                "warning",
                "stale: its last-known endpoints stay registered; changes there are not seen"
                    .to_owned(),
            ),
            ClusterState::Expired => (
                "critical",
                "stale past stale_ttl: its endpoints are withdrawn".to_owned(),
            ),
        };
        let message = match &s.last_error {
            Some(e) => format!("{message} ({e})"),
            None => message,
        };
        problems.push(Problem {
            severity,
            subject: format!("cluster {}", s.name),
            message,
            since_ms: Some(s.since_ms),
        });
    }
    for t in targets {
        let s = &t.status;
        let (severity, message) = match s.state {
            TargetState::Failing => (
                "critical",
                format!(
                    "pushes fail: {}",
                    s.last_error.as_deref().unwrap_or("unknown error")
                ),
            ),
            TargetState::Quarantined => (
                "warning",
                format!(
                    "refuses {} item(s), left out until they change",
                    s.quarantined.len()
                ),
            ),
            TargetState::Fenced => (
                "warning",
                "fenced: a newer controller pushes to it".to_owned(),
            ),
            _ => continue,
        };
        problems.push(Problem {
            severity,
            subject: format!("target {}", s.name),
            message,
            since_ms: Some(s.since_ms),
        });
    }
    for h in holds {
        problems.push(Problem {
            severity: "warning",
            subject: format!("upstream {}", h.upstream),
            message: format!(
                "cluster {}'s share is held down after a recovery (hold_down)",
                h.cluster
            ),
            since_ms: None,
        });
    }
    for d in diagnostics.iter().take(20) {
        problems.push(Problem {
            severity: "warning",
            subject: format!(
                "{} {} {}/{}",
                d.object.cluster, d.object.kind, d.object.namespace, d.object.name
            ),
            message: format!("{}: {}", d.diagnostic.reason, d.diagnostic.message),
            since_ms: None,
        });
    }
    problems.sort_by_key(|p| p.severity != "critical");
    problems
}
