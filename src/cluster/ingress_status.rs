//! Writes `status.loadBalancer.ingress` of podgate's Ingresses with the configured
//! publish addresses: only Ingresses of podgate's class, and only when the status
//! differs (so the MODIFIED event our patch causes does not patch again). An Ingress
//! that leaves podgate's class and still shows podgate's addresses has them removed.
//!
//! A reconciler, not a reaction to one event: whether an Ingress is podgate's can change
//! because its IngressClass arrived later on another watch, so the watcher records each
//! Ingress's current status and this task compares all of them with the Index. New and
//! changed Ingresses go first (a first install has thousands waiting, and the one a
//! user just created should not wait behind them: watch events go first, and a list's
//! Ingresses youngest first), and `CONCURRENCY` patches are in flight at once.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::watch::Origin;
use crate::hub::Desired;
use podgate_core::model::ClusterName;

/// How often statuses are compared with the Index.
const INTERVAL: Duration = Duration::from_millis(500);

/// Status patches in flight at once.
const CONCURRENCY: usize = 16;

/// Patches sent between two looks at what changed meanwhile.
const CHUNK: usize = 64;

type Key = (String, String);

/// What the watcher saw: `(namespace, name)` → the status the cluster last showed us,
/// and the Ingresses recorded since the reconciler last looked (new or changed).
#[derive(Default)]
pub(crate) struct Recorded {
    current: HashMap<Key, Shown>,
    fresh: Vec<Key>,
}

/// One Ingress as the watcher last saw it.
struct Shown {
    status: Vec<IngressLoadBalancerIngress>,
    /// `creationTimestamp` in seconds: a pass writes the youngest first.
    created: i64,
}

pub(crate) type Seen = Arc<Mutex<Recorded>>;

/// What one Ingress's status needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fix {
    /// podgate serves it and its status differs: write the publish addresses.
    Write,
    /// It left podgate's class but still shows podgate's addresses: remove them.
    Clear,
}

/// What `current` needs, given whether podgate serves the Ingress.
fn fix(
    serves: bool,
    current: &[IngressLoadBalancerIngress],
    want: &[IngressLoadBalancerIngress],
) -> Option<Fix> {
    match (serves, current == want) {
        (true, false) => Some(Fix::Write),
        (false, true) if !want.is_empty() => Some(Fix::Clear),
        _ => None,
    }
}

/// The `loadBalancer.ingress` entries for the publish addresses: IPs as `ip`, names as
/// `hostname`.
pub(crate) fn entries(addresses: &[String]) -> Vec<IngressLoadBalancerIngress> {
    addresses
        .iter()
        .map(|a| match a.parse::<IpAddr>() {
            Ok(_) => IngressLoadBalancerIngress {
                ip: Some(a.clone()),
                ..Default::default()
            },
            Err(_) => IngressLoadBalancerIngress {
                hostname: Some(a.clone()),
                ..Default::default()
            },
        })
        .collect()
}

/// The hook the Ingress watcher calls for every Ingress it sees.
///
/// Only watch events count as fresh: a list hands over every Ingress at once, and
/// those are written youngest first by the full pass.
pub(crate) fn recorder(seen: Seen) -> impl Fn(&Ingress, Origin) + Send + Sync {
    move |ing: &Ingress, origin: Origin| {
        let status = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default();
        let key = (ing.namespace().unwrap_or_default(), ing.name_any());
        let created = ing
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        let mut seen = seen.lock();
        seen.current.insert(key.clone(), Shown { status, created });
        if origin == Origin::Event {
            seen.fresh.push(key);
        }
    }
}

/// Patches the status of every Ingress whose status needs it, until dropped.
pub(crate) async fn run(
    client: Client,
    cluster: ClusterName,
    desired: Arc<Desired>,
    seen: Seen,
    addresses: Vec<String>,
) {
    if addresses.is_empty() {
        return;
    }
    let want = entries(&addresses);
    // What the Ingresses named by `keys` need (`None`: every Ingress seen), in order.
    let judge = |keys: Option<Vec<Key>>| -> Vec<(Key, Fix)> {
        let seen = seen.lock();
        desired.read(|index| {
            let needs = |(ns, name): &Key, current: &Shown| {
                fix(index.serves(&cluster, ns, name), &current.status, &want)
            };
            if let Some(keys) = keys {
                return keys
                    .into_iter()
                    .filter_map(|key| {
                        let fix = needs(&key, seen.current.get(&key)?)?;
                        Some((key, fix))
                    })
                    .collect();
            }
            // Every Ingress seen, the youngest first.
            let mut all: Vec<(i64, Key, Fix)> = seen
                .current
                .iter()
                .filter_map(|(key, current)| {
                    Some((current.created, key.clone(), needs(key, current)?))
                })
                .collect();
            all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            all.into_iter().map(|(_, key, fix)| (key, fix)).collect()
        })
    };
    loop {
        tokio::time::sleep(INTERVAL).await;
        // One pass: everything that needs a fix, the recently recorded first.
        let fresh = std::mem::take(&mut seen.lock().fresh);
        let mut queue: std::collections::VecDeque<(Key, Fix)> = judge(Some(fresh)).into();
        queue.extend(judge(None));
        let mut done: std::collections::HashSet<Key> = std::collections::HashSet::new();
        while !queue.is_empty() {
            // What was created or changed meanwhile jumps the queue.
            let fresh = std::mem::take(&mut seen.lock().fresh);
            for item in judge(Some(fresh)).into_iter().rev() {
                queue.push_front(item);
            }
            let mut chunk = Vec::with_capacity(CHUNK);
            while chunk.len() < CHUNK
                && let Some((key, fix)) = queue.pop_front()
            {
                if done.insert(key.clone()) {
                    chunk.push((key, fix));
                }
            }
            futures::stream::iter(chunk)
                .for_each_concurrent(CONCURRENCY, |(key, fix)| {
                    patch(&client, &cluster, &seen, &want, key, fix)
                })
                .await;
        }
    }
}

/// Sends one status patch and records what the cluster will show.
async fn patch(
    client: &Client,
    cluster: &ClusterName,
    seen: &Seen,
    want: &[IngressLoadBalancerIngress],
    (ns, name): Key,
    fix: Fix,
) {
    let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let (body, shown) = match fix {
        Fix::Write => (
            serde_json::json!({ "status": { "loadBalancer": { "ingress": want } } }),
            want.to_vec(),
        ),
        Fix::Clear => (
            serde_json::json!({ "status": { "loadBalancer": { "ingress": null } } }),
            Vec::new(),
        ),
    };
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        // Assume it took; the watch will report the truth.
        Ok(_) => {
            if let Some(current) = seen.lock().current.get_mut(&(ns, name)) {
                current.status = shown;
            }
        }
        Err(kube::Error::Api(e)) if e.code == 404 => drop(seen.lock().current.remove(&(ns, name))),
        Err(e) => {
            let ingress = format!("{ns}/{name}");
            crate::logging::warn_limited!(%cluster, %ingress, ?fix, error = %crate::logging::causes(&e), "could not write Ingress status");
        }
    }
}
