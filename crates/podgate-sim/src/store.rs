//! The versioned object store of the simulated Kubernetes API server (a test double).
//!
//! Owns the objects of one simulated cluster, as `serde_json::Value`s keyed by resource
//! type and etcd-like key (`namespace/name`, or `name` when cluster-scoped), the one
//! global, monotonically increasing resourceVersion, and a bounded history of changes
//! per resource type (like the real server's per-type watch cache) from which watches
//! resume and old snapshots are rebuilt. Versions older than a type's history are
//! "compacted": asking for them gives 410. It knows nothing of HTTP and
//! never validates: `write` decides what may be stored.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::Gvr;

/// What a change did to an object, as named in watch events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
#[derive(Debug)]
pub(crate) struct Change {
    /// The resourceVersion this change created.
    pub(crate) rv: u64,
    pub(crate) key: String,
    pub(crate) kind: ChangeType,
    /// The object after the change; for a deletion its last state, carrying the
    /// deletion's resourceVersion (as the real server's DELETED events do).
    pub(crate) object: Arc<Value>,
    /// The object before the change (`None` for an addition).
    pub(crate) prev: Option<Arc<Value>>,
}

/// Asked for a version that the bounded history no longer covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooOld;

/// The store key of an object: `ns/name` for namespaced objects, `name` otherwise.
pub(crate) fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// A snapshot of one resource type: store key → object, in key order.
pub(crate) type Snapshot = BTreeMap<String, Arc<Value>>;

/// The kept changes of one resource type.
#[derive(Debug, Default)]
struct History {
    changes: VecDeque<Arc<Change>>,
    /// Every change of this type with a version above `floor` is in `changes`.
    floor: u64,
}

pub(crate) struct Store {
    rv: u64,
    objects: HashMap<Gvr, Snapshot>,
    histories: HashMap<Gvr, History>,
    capacity: usize,
    /// Nothing at or below this version is kept, for any type (set by `compact`).
    compacted: u64,
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

impl Store {
    /// An empty store whose history keeps at most `capacity` changes (at least 1).
    /// Starts at a small non-zero version, like a fresh cluster.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rv: 1,
            objects: HashMap::new(),
            histories: HashMap::new(),
            capacity: capacity.max(1),
            compacted: 1,
        }
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The oldest version of `gvr` that can still be served.
    fn floor(&self, gvr: &Gvr) -> u64 {
        self.histories
            .get(gvr)
            .map_or(0, |h| h.floor)
            .max(self.compacted)
    }

    pub(crate) fn get(&self, gvr: &Gvr, key: &str) -> Option<Arc<Value>> {
        self.objects.get(gvr).and_then(|m| m.get(key)).cloned()
    }

    /// Stores `obj` under a new resourceVersion (written into its metadata) and records
    /// the change. Returns the stored object.
    pub(crate) fn put(&mut self, gvr: &Gvr, key: &str, mut obj: Value) -> Arc<Change> {
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        let obj = Arc::new(obj);
        let prev = self
            .objects
            .entry(gvr.clone())
            .or_default()
            .insert(key.to_owned(), obj.clone());
        let kind = if prev.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(gvr, key, kind, obj, prev)
    }

    /// Removes an object, recording a deletion. `None` if there was none.
    pub(crate) fn remove(&mut self, gvr: &Gvr, key: &str) -> Option<Arc<Change>> {
        let prev = self.objects.get_mut(gvr)?.remove(key)?;
        self.rv += 1;
        let mut last = (*prev).clone();
        set_rv(&mut last, self.rv);
        Some(self.record(gvr, key, ChangeType::Deleted, Arc::new(last), Some(prev)))
    }

    fn record(
        &mut self,
        gvr: &Gvr,
        key: &str,
        kind: ChangeType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) -> Arc<Change> {
        let change = Arc::new(Change {
            rv: self.rv,
            key: key.to_owned(),
            kind,
            object,
            prev,
        });
        let history = self.histories.entry(gvr.clone()).or_default();
        history.changes.push_back(change.clone());
        while history.changes.len() > self.capacity {
            if let Some(old) = history.changes.pop_front() {
                history.floor = old.rv;
            }
        }
        change
    }

    /// Forgets the whole history: every version older than the current one is gone.
    pub(crate) fn compact(&mut self) {
        self.histories.clear();
        self.compacted = self.rv;
    }

    /// The objects of `gvr` whose keys start with `prefix`, as they were at version
    /// `at` (rebuilt by undoing later changes).
    pub(crate) fn snapshot(&self, gvr: &Gvr, prefix: &str, at: u64) -> Result<Snapshot, TooOld> {
        if at < self.floor(gvr) {
            return Err(TooOld);
        }
        let mut snap: Snapshot = self
            .objects
            .get(gvr)
            .map(|m| {
                m.range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let changes = self
            .histories
            .get(gvr)
            .map(|h| &h.changes)
            .into_iter()
            .flatten();
        for change in changes.rev().take_while(|c| c.rv > at) {
            if !change.key.starts_with(prefix) {
                continue;
            }
            match &change.prev {
                Some(prev) => snap.insert(change.key.clone(), prev.clone()),
                None => snap.remove(&change.key),
            };
        }
        Ok(snap)
    }

    /// The changes of `gvr` after version `after`, oldest first.
    pub(crate) fn changes_since(&self, gvr: &Gvr, after: u64) -> Result<Vec<Arc<Change>>, TooOld> {
        if after < self.floor(gvr) {
            return Err(TooOld);
        }
        let Some(history) = self.histories.get(gvr) else {
            return Ok(Vec::new());
        };
        let start = history.changes.partition_point(|c| c.rv <= after);
        Ok(history.changes.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, v: u32) -> Value {
        json!({ "metadata": { "name": name }, "v": v })
    }

    #[test]
    fn snapshot_rebuilds_old_versions_and_refuses_compacted_ones() {
        let gvr = Gvr::new("", "v1", "configmaps");
        let mut s = Store::new(10);
        let a1 = s.put(&gvr, "default/a", obj("a", 1)).rv;
        s.put(&gvr, "default/a", obj("a", 2));
        s.put(&gvr, "default/b", obj("b", 1));
        s.remove(&gvr, "default/a");
        let old = s.snapshot(&gvr, "default/", a1).unwrap();
        assert_eq!(old.keys().collect::<Vec<_>>(), ["default/a"]);
        assert_eq!(old["default/a"]["v"], 1);
        assert_eq!(
            old["default/a"]["metadata"]["resourceVersion"],
            a1.to_string()
        );
        let now = s.snapshot(&gvr, "", s.current_rv()).unwrap();
        assert_eq!(now.keys().collect::<Vec<_>>(), ["default/b"]);
        s.compact();
        assert_eq!(s.snapshot(&gvr, "", a1), Err(TooOld));
        assert_eq!(s.changes_since(&gvr, a1).unwrap_err(), TooOld);
        assert!(s.changes_since(&gvr, s.current_rv()).unwrap().is_empty());
    }

    #[test]
    fn bounded_history_moves_the_floor() {
        let gvr = Gvr::new("", "v1", "configmaps");
        let mut s = Store::new(2);
        let first = s.put(&gvr, "x", obj("x", 1)).rv;
        s.put(&gvr, "x", obj("x", 2));
        assert!(s.changes_since(&gvr, first - 1).is_ok());
        s.put(&gvr, "x", obj("x", 3));
        assert_eq!(s.changes_since(&gvr, first - 1).unwrap_err(), TooOld);
        let since = s.changes_since(&gvr, first).unwrap();
        assert_eq!(
            since
                .iter()
                .map(|c| c.object["v"].as_u64())
                .collect::<Vec<_>>(),
            [Some(2), Some(3)]
        );
    }

    #[test]
    fn a_busy_kind_does_not_expire_a_quiet_one() {
        let (busy, quiet) = (
            Gvr::new("", "v1", "configmaps"),
            Gvr::new("", "v1", "secrets"),
        );
        let mut s = Store::new(2);
        let at = s.put(&quiet, "q", obj("q", 1)).rv;
        for v in 0..10 {
            s.put(&busy, "b", obj("b", v));
        }
        assert!(s.changes_since(&quiet, at).unwrap().is_empty());
        assert_eq!(s.changes_since(&busy, at).unwrap_err(), TooOld);
        assert_eq!(s.snapshot(&quiet, "", at).unwrap().len(), 1);
    }
}
