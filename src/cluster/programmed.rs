//! A Normal `Sync` Event on an Ingress once what it asks for is live on every LB
//! target (as ingress-nginx says `Sync` when it has loaded a change): once per spec
//! generation, so a user running `kubectl describe ingress` sees that it took.
//!
//! "Live" means every target acknowledged a push of the desired state at or after the
//! write that made the Ingress podgate's (`Desired::version`, `TargetStatus::programmed`),
//! and no target refuses its routes or one of its backends. Ingresses found by the
//! controller's first list that already show podgate's status were programmed by an
//! earlier run and are not announced again (a restart must not send an Event per
//! Ingress); without publish addresses to tell, the first list announces nothing.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, ResourceExt};

use super::watch::Origin;
use crate::hub::Desired;
use podgate_core::index::Kind;
use podgate_core::model::{ClusterName, UpstreamKey};

/// How often waiting Ingresses are compared with the LB targets.
const INTERVAL: Duration = Duration::from_secs(1);
/// Events published per pass at most; the rest wait for the next pass.
const PER_PASS: usize = 50;
/// Passes between two sweeps of Ingresses that no longer exist.
const SWEEP_EVERY: u32 = 60;

type Key = (String, String);

/// Where the LB targets stand for one Ingress.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// The lowest `Desired::version` every target holds; `None`: no target.
    pub(crate) programmed: Option<u64>,
    /// The targets, by name.
    pub(crate) targets: Vec<String>,
    /// Some target refuses the route table or one of the backends given.
    pub(crate) refused: bool,
}

/// Asks the LB targets where they stand, given an Ingress's backends.
pub(crate) type LbProgress = Arc<dyn Fn(&[UpstreamKey]) -> Progress + Send + Sync>;

/// One Ingress waiting for its Event.
#[derive(Debug)]
struct Waiting {
    generation: i64,
    /// Named in the Event: `kubectl describe` finds Events by the object's uid.
    uid: Option<String>,
    /// The desired version once it was first seen as podgate's.
    version: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The generation last announced (or known programmed) per Ingress.
    announced: HashMap<Key, i64>,
    waiting: HashMap<Key, Waiting>,
}

pub(crate) type Shared = Arc<Mutex<Tracker>>;

/// The hook the Ingress watcher calls for every Ingress it sees.
pub(crate) fn recorder(
    shared: Shared,
    addresses: &[String],
) -> impl Fn(&Ingress, Origin) + Send + Sync + use<> {
    let ours = super::ingress_status::entries(addresses);
    move |ing: &Ingress, origin: Origin| {
        let key = (ing.namespace().unwrap_or_default(), ing.name_any());
        let generation = ing.metadata.generation.unwrap_or(0);
        let mut t = shared.lock();
        if t.announced.get(&key) == Some(&generation) {
            return;
        }
        if origin == Origin::FirstList && !t.announced.contains_key(&key) {
            let shown: &[IngressLoadBalancerIngress] = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_deref())
                .unwrap_or_default();
            if ours.is_empty() || shown == ours {
                t.announced.insert(key, generation);
                return;
            }
        }
        t.waiting.insert(
            key,
            Waiting {
                generation,
                uid: ing.metadata.uid.clone(),
                version: None,
            },
        );
    }
}

/// Publishes the Events until the task is dropped.
pub(crate) async fn run(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    controller: String,
    shared: Shared,
    progress: LbProgress,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller,
            instance: None,
        },
    );
    let mut passes: u32 = 0;
    loop {
        tokio::time::sleep(INTERVAL).await;
        passes = passes.wrapping_add(1);
        if passes.is_multiple_of(SWEEP_EVERY) {
            sweep(&shared, &desired, &cluster);
        }
        for Due {
            key,
            generation,
            uid,
            targets,
        } in due(&shared, &desired, &cluster, &progress)
        {
            let reference = ObjectReference {
                api_version: Some("networking.k8s.io/v1".to_owned()),
                kind: Some("Ingress".to_owned()),
                namespace: Some(key.0.clone()),
                name: Some(key.1.clone()),
                uid,
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Normal,
                reason: "Sync".to_owned(),
                note: Some(format!("Programmed into every LB: {}", targets.join(", "))),
                action: "Program".to_owned(),
                secondary: None,
            };
            match recorder.publish(&event, &reference).await {
                Ok(()) => {
                    let mut t = shared.lock();
                    // Changed meanwhile: it waits for its new generation.
                    if t.waiting
                        .get(&key)
                        .is_some_and(|w| w.generation == generation)
                    {
                        t.waiting.remove(&key);
                    }
                    t.announced.insert(key, generation);
                }
                Err(e) => {
                    tracing::debug!(%cluster, ingress = %format!("{}/{}", key.0, key.1), error = %e, "could not publish Event");
                }
            }
        }
    }
}

/// An Ingress every target now holds.
struct Due {
    key: Key,
    generation: i64,
    uid: Option<String>,
    targets: Vec<String>,
}

/// The waiting Ingresses every target now holds, with the target names; records the
/// version at which each waiting Ingress was first seen as podgate's.
fn due(
    shared: &Shared,
    desired: &Desired,
    cluster: &ClusterName,
    progress: &LbProgress,
) -> Vec<Due> {
    // The candidates, with the version they wait for and their backends.
    let candidates: Vec<(Due, u64, Vec<UpstreamKey>)> = {
        let mut t = shared.lock();
        if t.waiting.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // The version with the Index it counts (read under its lock).
        desired.read_versioned(|index, now| {
            t.waiting.retain(|key, w| {
                if !index.has_object(cluster, Kind::Ingress, &key.0, &key.1) {
                    return false;
                }
                if !index.serves(cluster, &key.0, &key.1) {
                    // Not podgate's (yet): its version counts from when it becomes so.
                    w.version = None;
                    return true;
                }
                let since = *w.version.get_or_insert(now);
                if out.len() < PER_PASS {
                    let backends = index.backends_of(cluster, &key.0, &key.1);
                    let due = Due {
                        key: key.clone(),
                        generation: w.generation,
                        uid: w.uid.clone(),
                        targets: Vec::new(),
                    };
                    out.push((due, since, backends));
                }
                true
            });
        });
        out
    };
    // Asked with neither lock held: the targets' status locks are taken by workers
    // that read the Index.
    candidates
        .into_iter()
        .filter_map(|(due, since, backends)| {
            let p = progress(&backends);
            (p.programmed.is_some_and(|v| v >= since) && !p.refused).then_some(Due {
                targets: p.targets,
                ..due
            })
        })
        .collect()
}

/// Forgets Ingresses that no longer exist, so that one re-created under the same name
/// is announced again.
fn sweep(shared: &Shared, desired: &Desired, cluster: &ClusterName) {
    let mut t = shared.lock();
    desired.read(|index| {
        t.announced
            .retain(|(ns, name), _| index.has_object(cluster, Kind::Ingress, ns, name));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{IngressLoadBalancerStatus, IngressStatus};

    fn ingress(name: &str, generation: i64, shown: Option<&str>) -> Ingress {
        let mut ing = Ingress::default();
        ing.metadata.namespace = Some("shop".to_owned());
        ing.metadata.name = Some(name.to_owned());
        ing.metadata.generation = Some(generation);
        ing.status = shown.map(|ip| IngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(super::super::ingress_status::entries(&[ip.to_owned()])),
            }),
        });
        ing
    }

    #[test]
    fn a_restart_does_not_announce_what_an_earlier_run_programmed() {
        let shared = Shared::default();
        let record = recorder(shared.clone(), &["10.0.0.1".to_owned()]);
        record(&ingress("ours", 3, Some("10.0.0.1")), Origin::FirstList);
        record(&ingress("new", 1, None), Origin::FirstList);
        record(
            &ingress("elsewhere", 1, Some("10.9.9.9")),
            Origin::FirstList,
        );
        let waiting = |t: &Tracker| {
            let mut names: Vec<_> = t.waiting.keys().map(|k| k.1.clone()).collect();
            names.sort();
            names
        };
        assert_eq!(waiting(&shared.lock()), ["elsewhere", "new"]);

        // A change of spec after the restart is announced; a status-only change is not.
        record(&ingress("ours", 3, Some("10.0.0.1")), Origin::Event);
        assert_eq!(waiting(&shared.lock()), ["elsewhere", "new"]);
        record(&ingress("ours", 4, Some("10.0.0.1")), Origin::Event);
        assert_eq!(waiting(&shared.lock()), ["elsewhere", "new", "ours"]);
    }
}
