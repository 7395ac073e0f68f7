//! Sets `podgate.io/lb-registered` on gated pods: True once every LB target has
//! acknowledged a push that holds the pod's endpoint, False (with the targets still
//! waited for) until then.
//!
//! "Acknowledged" is the same fact the `Sync` Event uses: the `Desired::version` read
//! (under the Index's lock, with the lookup) when the endpoint was seen in its current
//! upstreams, against each target's
//! `TargetStatus::programmed`; a target that refuses one of the pod's upstreams has not
//! registered it. After `readiness_gate.timeout` a pod gets the gate anyway, with a
//! Warning Event naming the targets (a failing LB must not hold rollouts forever). A
//! pod whose Services podgate does not route gets it at once. Only the replica that
//! pushes (the term holder) writes; a condition once True is never set back, and a
//! terminating pod is never gated again. Patches are strategic merge patches on
//! `pods/status`: a JSON merge patch would replace the kubelet's conditions (k8s-wire
//! 18c/18d).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use super::pods::{CONDITION, GateStatus, Gated, PodKey, PodView};
use crate::hub::Desired;
use crate::sync::{Item, TargetStatus, Term};
use podgate_core::model::{ClusterName, UpstreamKey};

/// How often waiting pods are compared with the LB targets while any wait.
const TICK: Duration = Duration::from_millis(50);
/// Status patches in flight at once.
const IN_FLIGHT: usize = 16;

/// What the writer needs; one per cluster.
pub(crate) struct Writer {
    pub(crate) cluster: ClusterName,
    pub(crate) client: Client,
    pub(crate) desired: Arc<Desired>,
    pub(crate) gated: Arc<Gated>,
    pub(crate) targets: Vec<Arc<Mutex<TargetStatus>>>,
    pub(crate) term: Term,
    pub(crate) timeout: Duration,
    pub(crate) controller: String,
    /// Publish the timeout's Warning Event.
    pub(crate) events: bool,
}

/// The writer's memory of one waiting pod.
#[derive(Debug)]
struct Waiting {
    /// When its containers were first seen ready (the timeout counts from here).
    since: Instant,
    /// `Desired::version` when its endpoint was seen in `upstreams`, read with them.
    version: Option<u64>,
    upstreams: Vec<UpstreamKey>,
    /// A failed patch waits until then (backoff doubling from 1 s to 30 s).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The False reason and message last written, so that each is written once.
    written: Option<(&'static str, String)>,
    /// True was written: nothing more to do until the pod shows it (or goes).
    done: bool,
}

/// What to write for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) registered: bool,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// A Warning Event goes with it (the timeout).
    pub(crate) warn: bool,
}

impl Writer {
    /// Runs until the task is dropped.
    pub(crate) async fn run(self) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: self.controller.clone(),
                instance: None,
            },
        );
        let mut waiting: HashMap<PodKey, Waiting> = HashMap::new();
        loop {
            if waiting.is_empty() {
                self.gated.changed.notified().await;
            } else {
                tokio::select! {
                    () = self.gated.changed.notified() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
            }
            let leading = self.term.borrow().is_some();
            let writes = self.pass(&mut waiting, leading);
            futures::stream::iter(writes)
                .map(|(key, uid, verdict)| self.write(&recorder, key, uid, verdict))
                .buffer_unordered(IN_FLIGHT)
                .for_each(|(key, verdict)| {
                    if let Some(w) = waiting.get_mut(&key) {
                        match verdict {
                            Some(v) if v.registered => w.done = true,
                            Some(v) => {
                                w.written = Some((v.reason, v.message));
                                w.retry_at = None;
                                w.backoff = Duration::from_secs(1);
                            }
                            None => {
                                w.retry_at = Some(Instant::now() + w.backoff);
                                w.backoff = (w.backoff * 2).min(Duration::from_secs(30));
                            }
                        }
                    }
                    futures::future::ready(())
                })
                .await;
        }
    }

    /// Decides every waiting pod; returns the writes to make (none unless `leading`).
    fn pass(
        &self,
        waiting: &mut HashMap<PodKey, Waiting>,
        leading: bool,
    ) -> Vec<(PodKey, Option<String>, Verdict)> {
        let pods: Vec<(PodKey, PodView)> = self
            .gated
            .pods()
            .into_iter()
            .filter(|(_, v)| v.counts().is_some() && v.gate != GateStatus::True)
            .collect();
        waiting.retain(|k, _| pods.iter().any(|(p, _)| p == k));
        let now = Instant::now();
        let mut writes = Vec::new();
        for (key, view) in pods {
            let Some(address) = view.counts() else {
                continue;
            };
            let w = waiting.entry(key.clone()).or_insert(Waiting {
                since: now,
                version: None,
                upstreams: Vec::new(),
                written: None,
                done: false,
                retry_at: None,
                backoff: Duration::from_secs(1),
            });
            if w.done || w.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            let (lookup, version) = self.desired.read_versioned(|index, version| {
                (index.gated_lookup(&self.cluster, address), version)
            });
            // Seen in other upstreams than before (a new Ingress, back after a hold):
            // what counts is the version that shows these.
            if lookup.upstreams != w.upstreams {
                w.upstreams.clone_from(&lookup.upstreams);
                w.version = (!lookup.upstreams.is_empty()).then_some(version);
            }
            let verdict = decide(
                &lookup,
                w.version,
                &self.targets,
                now.duration_since(w.since) >= self.timeout,
                self.timeout,
            );
            let unchanged = !verdict.registered
                && w.written.as_ref() == Some(&(verdict.reason, verdict.message.clone()));
            if leading && !unchanged {
                writes.push((key, view.uid.clone(), verdict));
            }
        }
        writes
    }

    /// Patches one pod's condition (and publishes the timeout's Event); the key, and
    /// the verdict when it landed.
    async fn write(
        &self,
        recorder: &Recorder,
        key: PodKey,
        uid: Option<String>,
        verdict: Verdict,
    ) -> (PodKey, Option<Verdict>) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
        let patch = json!({ "status": { "conditions": [{
            "type": CONDITION,
            "status": if verdict.registered { "True" } else { "False" },
            "reason": verdict.reason,
            "message": verdict.message,
            "lastTransitionTime": now.to_string(),
        }] } });
        let pod = format!("{}/{}", key.0, key.1);
        if let Err(e) = api
            .patch_status(&key.1, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            crate::logging::warn_limited!(cluster = %self.cluster, %pod, error = %crate::logging::causes(&e), "readiness gate: could not patch the pod's status");
            return (key, None);
        }
        tracing::debug!(cluster = %self.cluster, %pod, registered = verdict.registered, reason = verdict.reason, "readiness gate written");
        if verdict.warn {
            self.gated
                .timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if verdict.warn && self.events {
            let reference = ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                namespace: Some(key.0.clone()),
                name: Some(key.1.clone()),
                uid,
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "LbRegistrationTimeout".to_owned(),
                note: Some(verdict.message.clone()),
                action: "Register".to_owned(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(cluster = %self.cluster, %pod, error = %e, "could not publish Event");
            }
        }
        (key, Some(verdict))
    }
}

/// The condition one pod should show. Pure: the targets' state and the clock are given.
pub(crate) fn decide(
    lookup: &podgate_core::index::GatedLookup,
    version: Option<u64>,
    targets: &[Arc<Mutex<TargetStatus>>],
    timed_out: bool,
    timeout: Duration,
) -> Verdict {
    let waiting = |reason: &'static str, message: String| Verdict {
        registered: false,
        reason,
        message,
        warn: false,
    };
    let verdict = match version {
        Some(version) if !lookup.upstreams.is_empty() => {
            let lagging = lagging(targets, version, &lookup.upstreams);
            if lagging.is_empty() {
                let names: Vec<String> = targets.iter().map(|t| t.lock().name.clone()).collect();
                return Verdict {
                    registered: true,
                    reason: "Registered",
                    message: if names.is_empty() {
                        "no LB target is configured".to_owned()
                    } else {
                        format!("registered on every LB target: {}", names.join(", "))
                    },
                    warn: false,
                };
            }
            waiting(
                "WaitingForLb",
                format!("not yet acknowledged by: {}", lagging.join(", ")),
            )
        }
        _ if lookup.listed && !lookup.routed => {
            return Verdict {
                registered: true,
                reason: "NotRouted",
                message: "no podgate route uses this pod's Services".to_owned(),
                warn: false,
            };
        }
        _ if lookup.listed => waiting(
            "NotRegistrable",
            "podgate routes this pod's Service but leaves the pod out (unroutable address, or its cluster is held or expired)".to_owned(),
        ),
        _ => waiting(
            "WaitingForEndpointSlice",
            "no EndpointSlice lists the pod yet".to_owned(),
        ),
    };
    if timed_out {
        return Verdict {
            registered: true,
            reason: "LbRegistrationTimeout",
            message: format!(
                "not registered within {}s ({}: {}); set anyway so that the rollout goes on",
                timeout.as_secs(),
                verdict.reason,
                verdict.message
            ),
            warn: true,
        };
    }
    verdict
}

/// The targets that have not acknowledged `version`, or refuse one of `upstreams`.
fn lagging(
    targets: &[Arc<Mutex<TargetStatus>>],
    version: u64,
    upstreams: &[UpstreamKey],
) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| {
            let t = t.lock();
            let refused = t.quarantined.iter().any(|q| match &q.item {
                Item::Upstream(key) => upstreams.contains(key),
                Item::Routes | Item::Certificate(_) => false,
            });
            (t.programmed < version || refused).then(|| t.name.clone())
        })
        .collect()
}
