//! One watcher task per cluster and kind: kube-runtime's watcher (list, then watch,
//! with backoff) feeding the Index. A relist is buffered from `Init` to `InitDone` and
//! applied as one atomic `reset`; a failed watch changes nothing in the Index.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::hub::{Cause, Desired};
use podgate_core::index::{Input, Kind, Object, Prepared};
use podgate_core::model::ClusterName;

use super::guard::RelistGuard;
use super::status::StatusCell;

/// How an object reached the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// In the watcher's first list since the controller started.
    FirstList,
    /// In a later list (after a watch expired or the API server was away).
    Relist,
    /// A watch event: created or changed while watched.
    Event,
}

/// Called with each applied object after the Index took it (e.g. to write status).
pub(crate) type AfterApply<K> = Box<dyn Fn(&K, Origin) + Send + Sync>;

/// Watches one kind until the task is dropped. With a `guard` (floor guard), completed
/// relists and withdrawing events go through it instead of straight to the Index.
#[allow(clippy::too_many_arguments)] // one watcher's whole context; split when it grows
pub(crate) async fn run<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    cluster: ClusterName,
    desired: Arc<Desired>,
    status: StatusCell,
    after_apply: Option<AfterApply<K>>,
    guard: Option<RelistGuard>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K: Into<Object>,
{
    let mut stream = watcher(api, config).default_backoff().boxed();
    // A relist is buffered as the Index's compact records, not as whole objects.
    let mut relist: Vec<Prepared> = Vec::new();
    // Typed copies for `after_apply`, kept only when it is set.
    let mut relisted: Vec<K> = Vec::new();
    let mut listed_once = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                let cause = Cause::Event {
                    cluster: cluster.clone(),
                    kind,
                    namespace: obj.namespace().unwrap_or_default(),
                    name: obj.name_any(),
                    deleted: false,
                };
                let copy = after_apply.as_ref().map(|_| obj.clone());
                let object: Object = obj.into();
                note_ignored(&cluster, &object);
                let input = Input::Apply {
                    cluster: cluster.clone(),
                    object,
                };
                apply_guarded(&desired, guard.as_ref(), &cause, input);
                if let (Some(f), Some(obj)) = (&after_apply, copy) {
                    f(&obj, Origin::Event);
                }
                status.healthy(kind, false);
            }
            Ok(watcher::Event::Delete(obj)) => {
                let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
                let cause = Cause::Event {
                    cluster: cluster.clone(),
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    deleted: true,
                };
                let input = Input::Delete {
                    cluster: cluster.clone(),
                    kind,
                    namespace,
                    name,
                };
                apply_guarded(&desired, guard.as_ref(), &cause, input);
                status.healthy(kind, false);
            }
            Ok(watcher::Event::Init) => {
                relist.clear();
                relisted.clear();
            }
            Ok(watcher::Event::InitApply(obj)) => {
                if after_apply.is_some() {
                    relisted.push(obj.clone());
                }
                let obj: Object = obj.into();
                note_ignored(&cluster, &obj);
                relist.extend(desired.prepare(&obj));
            }
            Ok(watcher::Event::InitDone) => {
                let objects = std::mem::take(&mut relist);
                let count = objects.len();
                let changes = if let Some(g) = &guard {
                    g.relist(objects)
                } else {
                    let cause = Cause::Relist {
                        cluster: cluster.clone(),
                        kind,
                        objects: count,
                    };
                    let input = Input::ResetPrepared {
                        cluster: cluster.clone(),
                        kind,
                        objects,
                    };
                    desired.apply(&cause, input)
                };
                tracing::info!(%cluster, %kind, objects = count, changed_upstreams = changes.upstreams.len(), "listed");
                status.healthy(kind, true);
                if let Some(f) = &after_apply {
                    let origin = if std::mem::replace(&mut listed_once, true) {
                        Origin::Relist
                    } else {
                        Origin::FirstList
                    };
                    relisted.drain(..).for_each(|obj| f(&obj, origin));
                }
            }
            // Routine: the API server forgot the watch's resource version (after its own
            // restart, or a long disconnect); the watcher lists again by itself.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::debug!(%cluster, %kind, "watch expired (410); listing again");
            }
            Err(e) => {
                status.failed(format!("{kind}: {}", crate::logging::causes(&e)));
            }
        }
    }
}

/// Applies one watch event, through the floor guard when the watcher has one.
fn apply_guarded(desired: &Desired, guard: Option<&RelistGuard>, cause: &Cause, input: Input) {
    if let Some(g) = guard {
        desired.apply_if(cause, input, |index, input| g.admit(index, input));
    } else {
        desired.apply(cause, input);
    }
}

/// Logs objects the Index skips on purpose, so that an operator can tell "ignored" from
/// "lost".
fn note_ignored(cluster: &ClusterName, obj: &Object) {
    if let Object::EndpointSlice(s) = obj
        && s.address_type == "FQDN"
    {
        let name = s.metadata.name.as_deref().unwrap_or("");
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        tracing::info!(%cluster, slice = %format!("{ns}/{name}"), "FQDN EndpointSlice ignored: podgate registers IP endpoints only");
    }
}
