//! Watches of the simulated Kubernetes API server (a test double).
//!
//! Owns the WATCH stream as a kube-apiserver 1.26 sends it: HTTP 200, then one JSON
//! event per line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`). Without a
//! `resourceVersion` (or with `0`) the current objects come first as `ADDED`; from
//! `N` it sends every change after `N`, or, when `N` is older than the kept history,
//! one `ERROR` event holding a 410 Expired Status and the end of the stream. Objects
//! that start or stop matching the label selector arrive as `ADDED` / `DELETED`, like
//! the real watch cache. When asked for, bookmarks go out every `bookmark_interval`
//! and, once the watch has delivered an event, 2 s before its deadline (as in the
//! recording); clients must not depend on them. The stream ends cleanly at `timeoutSeconds`,
//! abruptly on `drop_watches`, and with an ERROR 410 on `expire_history`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::list::parse_rv;
use super::resources::ResourceKind;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{Counters, OpenWatch, Shared};
use super::status::ApiError;
use super::store::{Change, ChangeType};

/// When no `timeoutSeconds` is given: the real server picks 30–60 min; the sim 30.
const DEFAULT_TIMEOUT: Duration = Duration::from_mins(30);

/// How long before its deadline a watch that has delivered events gets a last bookmark.
const PRE_TIMEOUT_BOOKMARK: Duration = Duration::from_secs(2);

/// The query parameters a WATCH understands.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchQuery {
    pub(crate) resource_version: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) bookmarks: bool,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

/// One chunk of the stream, or the error that aborts the connection.
pub(crate) type Chunk = Result<Bytes, io::Error>;

struct Watch {
    shared: Arc<Shared>,
    kind: Arc<ResourceKind>,
    prefix: String,
    q: WatchQuery,
    tx: mpsc::Sender<Chunk>,
}

/// Starts a watch; the receiver yields the body's chunks. `Err` (400) only for a
/// malformed `resourceVersion`: everything after that is inside the 200 stream.
pub(crate) fn start(
    shared: Arc<Shared>,
    kind: Arc<ResourceKind>,
    ns: Option<&str>,
    q: WatchQuery,
) -> Result<mpsc::Receiver<Chunk>, ApiError> {
    let from = match q.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(rv) => Some(parse_rv(rv)?),
    };
    let (tx, rx) = mpsc::channel(64);
    let watch = Watch {
        shared,
        kind,
        prefix: ns.map(|n| format!("{n}/")).unwrap_or_default(),
        q,
        tx,
    };
    tokio::spawn(watch.run(from));
    Ok(rx)
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut out =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

impl Watch {
    fn matches(&self, obj: &Value) -> bool {
        self.q.labels.matches(obj) && self.q.fields.matches(obj)
    }

    /// The event a change becomes for this watch, if any.
    fn event(&self, c: &Change) -> Option<Bytes> {
        if !c.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.prev.as_deref().is_some_and(|p| self.matches(p));
        match (c.kind, before, now) {
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => {
                Some(line("ADDED", &c.object))
            }
            (ChangeType::Modified, true, true) => Some(line("MODIFIED", &c.object)),
            (ChangeType::Deleted, true, _) => Some(line("DELETED", &c.object)),
            (ChangeType::Modified, true, false) => {
                let mut old = c.prev.as_deref().cloned().unwrap_or(Value::Null);
                if let Some(m) = old.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), json!(c.rv.to_string()));
                }
                Some(line("DELETED", &old))
            }
            _ => None,
        }
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let mut obj = json!({
            "kind": self.kind.kind,
            "apiVersion": self.kind.gvr.api_version(),
            "metadata": { "resourceVersion": rv.to_string(), "creationTimestamp": null },
        });
        if self.kind.kind == "EndpointSlice" {
            obj["addressType"] = json!("");
            obj["endpoints"] = Value::Null;
            obj["ports"] = Value::Null;
        }
        line("BOOKMARK", &obj)
    }

    async fn send(&self, chunk: Bytes) -> bool {
        self.tx.send(Ok(chunk)).await.is_ok()
    }

    async fn expired(&self) {
        let _ = self
            .send(line("ERROR", &ApiError::expired("watch").to_json()))
            .await;
    }

    /// Sends the current objects as ADDED; returns their version, `None` if the client left.
    async fn send_initial(&self) -> Option<(u64, bool)> {
        let (rv, initial) = {
            let store = self.shared.store();
            let rv = store.current_rv();
            let snapshot = store.snapshot(&self.kind.gvr, &self.prefix, rv);
            (rv, snapshot.unwrap_or_default())
        };
        let mut any = false;
        for obj in initial.values().filter(|o| self.matches(o)) {
            if !self.send(line("ADDED", obj)).await {
                return None;
            }
            any = true;
        }
        Some((rv, any))
    }

    async fn run(self, from: Option<u64>) {
        let started = Instant::now();
        let shared = self.shared.clone();
        Counters::bump(&shared.counters.watches);
        let _open = OpenWatch::new(&shared.counters.open_watches);
        let mut changed = self.shared.changed.subscribe();
        let mut control = self.shared.control.subscribe();
        let at_start = *control.borrow_and_update();
        let (mut last, mut delivered) = if let Some(rv) = from {
            (rv, false)
        } else {
            let Some(initial) = self.send_initial().await else {
                return;
            };
            initial
        };
        let deadline = started + self.q.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let mut bookmark_base = started;
        loop {
            let pending = {
                let store = self.shared.store();
                store
                    .changes_since(&self.kind.gvr, last)
                    .map(|c| (c, store.current_rv()))
            };
            let Ok((batch, seen)) = pending else {
                self.expired().await;
                return;
            };
            for c in &batch {
                if let Some(ev) = self.event(c) {
                    if !self.send(ev).await {
                        return;
                    }
                    delivered = true;
                }
            }
            // Nothing of this kind happened up to `seen`: later lookups start there.
            last = last.max(seen);
            let next_bookmark = self.next_bookmark(bookmark_base, deadline, delivered);
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                r = control.changed() => {
                    let now = *control.borrow_and_update();
                    if r.is_err() {
                        return;
                    }
                    if now.expiries != at_start.expiries {
                        self.expired().await;
                        return;
                    }
                    if now.drops != at_start.drops {
                        let _ = self.tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "watch dropped by fault injection"))).await;
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return,
                () = tokio::time::sleep_until(next_bookmark.unwrap_or(deadline)), if next_bookmark.is_some() => {
                    bookmark_base = Instant::now();
                    if !self.send(self.bookmark(last)).await {
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// When the next bookmark is due, like the real watch cache: every
    /// `bookmark_interval`, and 2 s before the deadline once the watch has delivered an
    /// event (none after that); `None` when bookmarks were not asked for.
    fn next_bookmark(&self, base: Instant, deadline: Instant, delivered: bool) -> Option<Instant> {
        if !self.q.bookmarks {
            return None;
        }
        let heartbeat = base + self.shared.bookmark_interval.max(Duration::from_millis(1));
        let at = match deadline.checked_sub(PRE_TIMEOUT_BOOKMARK) {
            Some(pre) if delivered && pre < heartbeat => pre,
            _ => heartbeat,
        };
        (at > base).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::Gvr;
    use super::super::validate::Leniency;
    use super::super::write;
    use super::*;

    fn setup(bookmark_every: Duration) -> (Arc<Shared>, Arc<ResourceKind>) {
        let shared = Arc::new(Shared::new(100, Leniency::default(), bookmark_every));
        let ns = shared
            .registry()
            .get(&Gvr::new("", "v1", "namespaces"))
            .unwrap();
        write::create(
            &shared,
            &ns,
            None,
            json!({ "metadata": { "name": "default" } }),
        )
        .unwrap();
        let cms = shared
            .registry()
            .get(&Gvr::new("", "v1", "configmaps"))
            .unwrap();
        write::create(
            &shared,
            &cms,
            Some("default"),
            json!({ "metadata": { "name": "a" } }),
        )
        .unwrap();
        (shared, cms)
    }

    fn event(chunk: &Bytes) -> (String, Value) {
        let v: Value = serde_json::from_slice(chunk).unwrap();
        (
            v["type"].as_str().unwrap_or("").to_owned(),
            v["object"].clone(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn bookmarks_come_every_interval_and_the_stream_ends_at_the_timeout() {
        let (shared, kind) = setup(Duration::from_secs(7));
        let q = WatchQuery {
            timeout: Some(Duration::from_secs(30)),
            bookmarks: true,
            ..WatchQuery::default()
        };
        let started = tokio::time::Instant::now();
        let mut rx = start(shared.clone(), kind, Some("default"), q).unwrap();
        let (kind, obj) = event(&rx.recv().await.unwrap().unwrap());
        assert_eq!(
            (kind.as_str(), obj["metadata"]["name"].as_str()),
            ("ADDED", Some("a"))
        );
        let mut bookmarks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let (kind, obj) = event(&chunk.unwrap());
            assert_eq!(kind, "BOOKMARK");
            assert_eq!(obj["kind"], "ConfigMap");
            bookmarks.push(obj["metadata"]["resourceVersion"].clone());
        }
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let rv = json!(shared.store().current_rv().to_string());
        assert_eq!(bookmarks, vec![rv; 4], "at 7, 14, 21 and 28 s");
    }

    #[tokio::test(start_paused = true)]
    async fn no_bookmarks_unless_asked() {
        let (shared, kind) = setup(Duration::from_secs(1));
        let rv = shared.store().current_rv();
        let q = WatchQuery {
            resource_version: Some(rv.to_string()),
            timeout: Some(Duration::from_secs(5)),
            ..WatchQuery::default()
        };
        let mut rx = start(shared, kind, None, q).unwrap();
        assert!(
            rx.recv().await.is_none(),
            "nothing happened: no event, then the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_from_a_compacted_version_gets_one_410_error_event() {
        let (shared, kind) = setup(Duration::from_mins(1));
        shared.store().compact();
        let q = WatchQuery {
            resource_version: Some("1".into()),
            ..WatchQuery::default()
        };
        let mut rx = start(shared, kind, None, q).unwrap();
        let (kind, obj) = event(&rx.recv().await.unwrap().unwrap());
        assert_eq!((kind.as_str(), obj["code"].as_u64()), ("ERROR", Some(410)));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_delivered_events_gets_a_bookmark_just_before_its_deadline() {
        let (shared, kind) = setup(Duration::from_mins(1));
        let q = WatchQuery {
            timeout: Some(Duration::from_secs(10)),
            bookmarks: true,
            ..WatchQuery::default()
        };
        let started = tokio::time::Instant::now();
        let mut rx = start(shared.clone(), kind.clone(), None, q.clone()).unwrap();
        assert_eq!(event(&rx.recv().await.unwrap().unwrap()).0, "ADDED");
        assert_eq!(event(&rx.recv().await.unwrap().unwrap()).0, "BOOKMARK");
        assert_eq!(started.elapsed(), Duration::from_secs(8));
        assert!(rx.recv().await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        // Nothing delivered: no bookmark before the end.
        let quiet = WatchQuery {
            resource_version: Some(shared.store().current_rv().to_string()),
            ..q
        };
        let mut rx = start(shared, kind, None, quiet).unwrap();
        assert!(rx.recv().await.is_none());
    }
}
