//! The gated pods of one cluster: a Namespace watch limited by the opt-in label, and
//! one Pod watch per opted-in namespace (never every pod of the cluster).
//!
//! Only pods that carry `podgate.io/lb-registered` in `spec.readinessGates` are kept,
//! as a small `PodView`. Whenever one starts or stops counting (containers ready, not
//! terminating) the Index hears it (`Input::GatedPod`), so that its not-yet-ready
//! endpoint is registered; the writer (`writer.rs`) reads the table to set the
//! condition. A failing watch retries with backoff and never touches the cluster's
//! sync state: the gate is a consequence of the LB, not an input of routing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::hub::{Cause, Desired};
use podgate_core::index::Input;
use podgate_core::model::ClusterName;

/// The condition type podgate sets, and the readiness gate pods carry.
pub const CONDITION: &str = "podgate.io/lb-registered";
/// The Namespace label that opts a namespace in (value `enabled`).
pub const INJECT_LABEL: &str = "podgate.io/readiness-gate-inject";
const INJECT_SELECTOR: &str = "podgate.io/readiness-gate-inject=enabled";

/// `(namespace, name)`.
pub(crate) type PodKey = (String, String);

/// The gate condition as the pod shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateStatus {
    Absent,
    False,
    True,
}

/// What the gate needs of one pod that carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodView {
    /// Named in Events (`kubectl describe pod` finds them by uid).
    pub(crate) uid: Option<String>,
    pub(crate) address: Option<IpAddr>,
    pub(crate) containers_ready: bool,
    /// `deletionTimestamp` set: draining, never gated again.
    pub(crate) terminating: bool,
    pub(crate) gate: GateStatus,
    /// The gate condition's reason and message as the pod shows them.
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl PodView {
    /// `None` for a pod without podgate's readiness gate.
    pub(crate) fn of(pod: &Pod) -> Option<Self> {
        let gated = pod
            .spec
            .as_ref()?
            .readiness_gates
            .iter()
            .flatten()
            .any(|g| g.condition_type == CONDITION);
        if !gated {
            return None;
        }
        let status = pod.status.as_ref();
        let find = |t: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == t))
        };
        let condition = |t: &str| find(t).map(|c| c.status.as_str());
        let gate = find(CONDITION);
        Some(Self {
            uid: pod.metadata.uid.clone(),
            address: status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok()),
            containers_ready: condition("ContainersReady") == Some("True"),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            gate: match condition(CONDITION) {
                Some("True") => GateStatus::True,
                Some(_) => GateStatus::False,
                None => GateStatus::Absent,
            },
            reason: gate.and_then(|c| c.reason.clone()).unwrap_or_default(),
            message: gate.and_then(|c| c.message.clone()).unwrap_or_default(),
        })
    }

    /// Every value of [`PodView::state`].
    pub(crate) const STATES: [&'static str; 4] = [
        "ready",
        "not ready (waiting for the LB)",
        "not ready (containers)",
        "terminating",
    ];

    /// What a person reads: `ready`, `not ready (waiting for the LB)`, …
    pub(crate) fn state(&self) -> &'static str {
        match (self.terminating, self.containers_ready, self.gate) {
            (true, _, _) => "terminating",
            (false, false, _) => "not ready (containers)",
            (false, true, GateStatus::True) => "ready",
            (false, true, _) => "not ready (waiting for the LB)",
        }
    }

    /// The address the LB may take while the gate is pending: containers ready and
    /// not terminating.
    pub(crate) fn counts(&self) -> Option<IpAddr> {
        self.address
            .filter(|_| self.containers_ready && !self.terminating)
    }
}

/// Every gated pod of one cluster, shared by its watchers, the writer and the webhook.
#[derive(Default)]
pub(crate) struct Gated {
    table: Mutex<Table>,
    /// Woken whenever a pod changes.
    pub(crate) changed: Notify,
    /// Gates set by the timeout (`podgate_readiness_gate_timeouts_total`).
    pub(crate) timeouts: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Table {
    pods: HashMap<PodKey, PodView>,
    namespaces: HashSet<String>,
}

impl Gated {
    /// The pods that carry the gate, with their views (a copy; the table stays small).
    pub(crate) fn pods(&self) -> Vec<(PodKey, PodView)> {
        let t = self.table.lock();
        t.pods.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The opted-in namespaces, sorted.
    pub(crate) fn namespaces(&self) -> Vec<String> {
        let mut out: Vec<String> = self.table.lock().namespaces.iter().cloned().collect();
        out.sort();
        out
    }

    /// Whether `namespace` is opted in (its label seen by the Namespace watch).
    pub(crate) fn opted_in(&self, namespace: &str) -> bool {
        self.table.lock().namespaces.contains(namespace)
    }

    /// One pod changed. The table and the Index change under the table's lock (taken
    /// before the Index's, never after), so that relists of other namespaces and this
    /// event reach the Index in the order they changed the table.
    fn put(&self, cluster: &ClusterName, desired: &Desired, key: &PodKey, view: Option<PodView>) {
        let mut t = self.table.lock();
        // A namespace no longer watched (its watch was stopped while this event was
        // on its way) keeps nothing.
        if !t.namespaces.contains(&key.0) {
            return;
        }
        let old = match &view {
            Some(v) => t.pods.insert(key.clone(), v.clone()),
            None => t.pods.remove(key),
        };
        let (before, after) = (old.and_then(|v| v.counts()), view.and_then(|v| v.counts()));
        if before != after {
            let say = |address: IpAddr, ready: bool| {
                let cause = Cause::GatedPod {
                    cluster: cluster.clone(),
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    ready,
                };
                let input = Input::GatedPod {
                    cluster: cluster.clone(),
                    address,
                    ready,
                };
                desired.apply(&cause, input);
            };
            if let Some(address) = before {
                say(address, false);
            }
            if let Some(address) = after {
                say(address, true);
            }
        }
        drop(t);
        self.changed.notify_one();
    }

    /// A namespace is opted in: its watch starts (its pods come with its first list).
    fn watch(&self, namespace: &str) {
        self.table.lock().namespaces.insert(namespace.to_owned());
    }

    /// Replaces one namespace's pods (its watch relisted, or it left: `None`), and hands
    /// the Index the cluster's whole set of counting pods.
    fn replace(
        &self,
        cluster: &ClusterName,
        desired: &Desired,
        namespace: &str,
        pods: Option<&[(PodKey, PodView)]>,
    ) {
        let mut t = self.table.lock();
        // The relist of a namespace whose watch was stopped meanwhile changes nothing.
        if pods.is_some() && !t.namespaces.contains(namespace) {
            return;
        }
        let ready: Vec<IpAddr> = {
            t.pods.retain(|k, _| k.0 != namespace);
            match &pods {
                Some(pods) => {
                    t.pods.extend(pods.iter().cloned());
                }
                None => {
                    t.namespaces.remove(namespace);
                }
            }
            t.pods.values().filter_map(PodView::counts).collect()
        };
        // Under the table's lock, as in `put`.
        let cause = Cause::GatedPods {
            cluster: cluster.clone(),
            namespace: namespace.to_owned(),
            ready: ready.len(),
        };
        desired.apply(
            &cause,
            Input::GatedPods {
                cluster: cluster.clone(),
                ready,
            },
        );
        drop(t);
        self.changed.notify_one();
    }
}

/// Watches the opted-in namespaces and keeps one Pod watch running in each, until the
/// task is dropped.
pub(crate) async fn run(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    gated: Arc<Gated>,
) {
    let api = Api::<Namespace>::all(client.clone());
    let config = watcher::Config::default().labels(INJECT_SELECTOR);
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut watches = Watches::default();
    let mut listing: Option<HashSet<String>> = None;
    let ctx = Context {
        client,
        cluster,
        desired,
        gated,
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(ns)) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(ns.name_any());
                }
            }
            Ok(watcher::Event::InitDone) => {
                let now = listing.take().unwrap_or_default();
                let gone: Vec<String> = watches
                    .0
                    .keys()
                    .filter(|n| !now.contains(*n))
                    .cloned()
                    .collect();
                for ns in gone {
                    ctx.stop(&mut watches, &ns);
                }
                for ns in now {
                    ctx.start(&mut watches, ns);
                }
            }
            Ok(watcher::Event::Apply(ns)) => ctx.start(&mut watches, ns.name_any()),
            Ok(watcher::Event::Delete(ns)) => ctx.stop(&mut watches, &ns.name_any()),
            Err(e) => {
                crate::logging::warn_limited!(cluster = %ctx.cluster, error = %crate::logging::causes(&e), "readiness gate: Namespace watch failed; retrying");
            }
        }
    }
}

/// The running Pod watches by namespace; they end with the Namespace watch.
#[derive(Default)]
struct Watches(HashMap<String, AbortHandle>);

impl Drop for Watches {
    fn drop(&mut self) {
        for (_, handle) in self.0.drain() {
            handle.abort();
        }
    }
}

struct Context {
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    gated: Arc<Gated>,
}

impl Context {
    fn start(&self, watches: &mut Watches, namespace: String) {
        if watches.0.contains_key(&namespace) {
            return;
        }
        self.gated.watch(&namespace);
        let task = tokio::spawn(watch_pods(
            Api::namespaced(self.client.clone(), &namespace),
            self.cluster.clone(),
            namespace.clone(),
            self.desired.clone(),
            self.gated.clone(),
        ));
        tracing::info!(cluster = %self.cluster, %namespace, "readiness gate: watching the namespace's pods");
        watches.0.insert(namespace, task.abort_handle());
    }

    fn stop(&self, watches: &mut Watches, namespace: &str) {
        if let Some(handle) = watches.0.remove(namespace) {
            handle.abort();
            self.gated
                .replace(&self.cluster, &self.desired, namespace, None);
            tracing::info!(cluster = %self.cluster, %namespace, "readiness gate: namespace no longer opted in");
        }
    }
}

async fn watch_pods(
    api: Api<Pod>,
    cluster: ClusterName,
    namespace: String,
    desired: Arc<Desired>,
    gated: Arc<Gated>,
) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Vec<(PodKey, PodView)> = Vec::new();
    let key = |pod: &Pod| (namespace.clone(), pod.name_any());
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => {
                gated.put(&cluster, &desired, &key(&pod), PodView::of(&pod));
            }
            Ok(watcher::Event::Delete(pod)) => gated.put(&cluster, &desired, &key(&pod), None),
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(view) = PodView::of(&pod) {
                    relist.push((key(&pod), view));
                }
            }
            Ok(watcher::Event::InitDone) => {
                gated.replace(&cluster, &desired, &namespace, Some(&relist));
                relist.clear();
            }
            Err(e) => {
                crate::logging::warn_limited!(%cluster, %namespace, error = %crate::logging::causes(&e), "readiness gate: Pod watch failed; retrying");
            }
        }
    }
}
