//! Items an LB refused, kept out of later batches until they change.
//!
//! A refused batch (4xx) is split in halves until the items the LB refuses on their own
//! are found ([`split`]); the rest is applied. A refused item is quarantined with the
//! version the Index wanted when it was refused, and left out of every batch while the
//! Index still wants that same version ([`Quarantine::filter`]): re-sending it cannot
//! help. Once it changes (or goes away) it is sent again, and leaves the quarantine when
//! the LB accepts it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use podgate_core::index::{RouteScope, Snapshot};
use podgate_core::model::{Batch, Certificate, Upstream, UpstreamKey, VirtualHost};

use crate::clock::now_ms;

/// One item of a batch, the unit an LB may refuse. The route table goes as one item:
/// the contract replaces it whole. Serialized as `{"kind": "upstream", "name":
/// "shop/web:80"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// An upsert, a patch or a removal of this upstream.
    Upstream(UpstreamKey),
    /// An upsert or a removal of this certificate (`namespace/secret`).
    Certificate(String),
    Routes,
}

impl Item {
    /// Every [`Item::kind`], for metrics that report each kind, even at zero.
    pub(crate) const KINDS: [&'static str; 3] = ["upstream", "certificate", "routes"];

    /// `upstream`, `certificate` or `routes`: a metric label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Upstream(_) => "upstream",
            Self::Certificate(_) => "certificate",
            Self::Routes => "routes",
        }
    }
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let name = match self {
            Self::Upstream(key) => key.to_string(),
            Self::Certificate(id) => id.clone(),
            Self::Routes => String::new(),
        };
        let mut s = serializer.serialize_struct("Item", 2)?;
        s.serialize_field("kind", self.kind())?;
        s.serialize_field("name", &name)?;
        s.end()
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upstream(key) => write!(f, "upstream {key}"),
            Self::Certificate(id) => write!(f, "certificate {id}"),
            Self::Routes => f.write_str("the route table"),
        }
    }
}

/// What the Index wanted of an item when the LB refused it (`None`: its removal).
#[derive(Clone, Debug, PartialEq)]
enum Version {
    Upstream(Option<Arc<Upstream>>),
    Certificate(Option<Certificate>),
    Routes(imbl::OrdMap<RouteScope, Arc<VirtualHost>>),
}

fn version(snapshot: &Snapshot, item: &Item) -> Version {
    match item {
        Item::Upstream(key) => Version::Upstream(snapshot.upstreams.get(key).cloned()),
        Item::Certificate(id) => Version::Certificate(snapshot.certificates.get(id).cloned()),
        Item::Routes => Version::Routes(snapshot.vhosts.clone()),
    }
}

/// One refused item, for the admin view.
#[derive(Clone, Debug, Serialize)]
pub struct Quarantined {
    #[serde(flatten)]
    pub item: Item,
    /// The LB's answer to the item on its own.
    pub error: String,
    /// When it was refused (ms since the Unix epoch).
    pub since_ms: u64,
    #[serde(skip)]
    version: Version,
}

/// The items one LB target refused.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    items: BTreeMap<Item, Quarantined>,
}

impl Quarantine {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn contains(&self, item: &Item) -> bool {
        self.items.contains_key(item)
    }

    /// The quarantined upstreams' keys.
    pub(crate) fn upstreams(&self) -> impl Iterator<Item = &UpstreamKey> {
        self.items.keys().filter_map(|item| match item {
            Item::Upstream(key) => Some(key),
            _ => None,
        })
    }

    /// Every quarantined item, in item order.
    pub(crate) fn list(&self) -> Vec<Quarantined> {
        self.items.values().cloned().collect()
    }

    /// Quarantines `item` as `snapshot` wants it.
    pub(crate) fn insert(&mut self, item: Item, error: String, snapshot: &Snapshot) {
        let version = version(snapshot, &item);
        self.items.insert(
            item.clone(),
            Quarantined {
                item,
                error,
                since_ms: now_ms(),
                version,
            },
        );
    }

    /// The LB accepted these items: they are no longer refused. Whether any was.
    pub(crate) fn release(&mut self, accepted: &BTreeSet<Item>) -> bool {
        let before = self.items.len();
        self.items.retain(|item, _| !accepted.contains(item));
        self.items.len() != before
    }

    /// Forgets everything (an LB that restarted may accept what it refused).
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }

    /// Leaves out of `batch` every quarantined item `snapshot` still wants as it was
    /// when refused.
    pub(crate) fn filter(&self, batch: &mut Batch, snapshot: &Snapshot) {
        if self.items.is_empty() {
            return;
        }
        let unchanged = |item: &Item| {
            self.items
                .get(item)
                .is_some_and(|q| q.version == version(snapshot, item))
        };
        retain(batch, |item| !unchanged(item));
    }
}

/// The items of `batch`: upstreams, then certificates, then the route table last (the
/// LB must hold an upstream before a route names it).
pub(crate) fn items(batch: &Batch) -> Vec<Item> {
    let upstream = |k: &UpstreamKey| Item::Upstream(k.clone());
    let certificate = |id: &String| Item::Certificate(id.clone());
    let mut out: Vec<Item> = batch
        .upsert_upstreams
        .iter()
        .map(|u| upstream(&u.key))
        .chain(batch.patch_upstreams.iter().map(|p| upstream(&p.key)))
        .chain(batch.remove_upstreams.iter().map(upstream))
        .chain(batch.upsert_certificates.iter().map(|c| certificate(&c.id)))
        .chain(batch.remove_certificates.iter().map(certificate))
        .collect();
    if batch.routes.is_some() {
        out.push(Item::Routes);
    }
    out
}

/// Keeps in `batch` only the items `keep` accepts.
fn retain(batch: &mut Batch, keep: impl Fn(&Item) -> bool) {
    batch
        .upsert_upstreams
        .retain(|u| keep(&Item::Upstream(u.key.clone())));
    batch
        .patch_upstreams
        .retain(|p| keep(&Item::Upstream(p.key.clone())));
    batch
        .remove_upstreams
        .retain(|k| keep(&Item::Upstream(k.clone())));
    batch
        .upsert_certificates
        .retain(|c| keep(&Item::Certificate(c.id.clone())));
    batch
        .remove_certificates
        .retain(|id| keep(&Item::Certificate(id.clone())));
    if batch.routes.is_some() && !keep(&Item::Routes) {
        batch.routes = None;
    }
}

/// `batch` cut in two halves of its items (routes in the second), or `None` when it
/// holds one item or none.
pub(crate) fn split(batch: &Batch) -> Option<(Batch, Batch)> {
    let all = items(batch);
    if all.len() < 2 {
        return None;
    }
    let first: BTreeSet<Item> = all[..all.len() / 2].iter().cloned().collect();
    let mut a = batch.clone();
    retain(&mut a, |i| first.contains(i));
    // A full sync is complete only once its last item landed.
    a.complete = false;
    let mut b = batch.clone();
    retain(&mut b, |i| !first.contains(i));
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{PortRef, RouteTable};

    fn up(name: &str) -> Upstream {
        Upstream {
            health_check: None,
            key: UpstreamKey::new("ns", name, PortRef::Number(80)),
            shares: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    fn batch() -> Batch {
        Batch {
            epoch: 3,
            upsert_upstreams: vec![up("a"), up("b"), up("c")],
            remove_upstreams: vec![up("d").key],
            routes: Some(RouteTable::default()),
            remove_certificates: vec!["ns/tls".into()],
            ..Batch::default()
        }
    }

    #[test]
    fn halves_hold_every_item_once_and_the_routes_go_in_the_second() {
        let whole = batch();
        let (a, b) = split(&whole).unwrap();
        assert_eq!(items(&a).len() + items(&b).len(), items(&whole).len());
        assert_eq!(items(&a).len(), 3);
        assert!(a.routes.is_none() && b.routes.is_some());
        assert_eq!((a.epoch, b.epoch), (3, 3));
        let (a, b) = split(&Batch {
            complete: true,
            ..whole.clone()
        })
        .unwrap();
        assert!(!a.complete && b.complete, "only the second half completes");
        let mut both: Vec<Item> = items(&a).into_iter().chain(items(&b)).collect();
        both.sort();
        let mut all = items(&whole);
        all.sort();
        assert_eq!(both, all);
        let single = Batch {
            routes: Some(RouteTable::default()),
            ..Batch::default()
        };
        assert!(split(&single).is_none());
    }

    #[test]
    fn a_quarantined_item_stays_out_until_it_changes() {
        let mut snapshot = Snapshot::default();
        let b = up("b");
        snapshot
            .upstreams
            .insert(b.key.clone(), Arc::new(b.clone()));
        let mut q = Quarantine::default();
        q.insert(Item::Upstream(b.key.clone()), "400: no".into(), &snapshot);

        let mut sent = batch();
        q.filter(&mut sent, &snapshot);
        let names: Vec<&str> = sent
            .upsert_upstreams
            .iter()
            .map(|u| &*u.key.service)
            .collect();
        assert_eq!(names, ["a", "c"], "unchanged: left out");

        let mut changed = b;
        changed.shares = vec![("idc".into(), 1000)];
        snapshot
            .upstreams
            .insert(changed.key.clone(), Arc::new(changed));
        let mut sent = batch();
        q.filter(&mut sent, &snapshot);
        assert_eq!(sent.upsert_upstreams.len(), 3, "changed: sent again");

        assert!(q.release(&BTreeSet::from([Item::Upstream(up("b").key)])));
        assert!(q.is_empty());
    }
}
