//! One worker per LB instance: takes what changed, pushes it, retries with backoff and
//! jitter, and resyncs fully when the LB restarted or drifted. A slow or dead instance
//! only ever delays itself.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::lb::{BoxFuture, LbAdapter, LbError};
use podgate_core::index::{Snapshot, UpstreamMap};
use podgate_core::model::{Batch, StateSummary};

use super::audit::{Audit, AuditEntry};
use super::batch;
use super::metrics::SyncMetrics;
use super::quarantine::{self, Item, Quarantine, Quarantined};
use crate::clock::now_ms;
use crate::hub::{Desired, Pending, Work};

/// Timing of one worker. All durations run on tokio time, so tests can pause it.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often to compare what the LB holds with what podgate last pushed (a cheap
    /// summary read): how soon a restarted LB is noticed when nothing else changes.
    pub drift_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            drift_interval: Duration::from_millis(500),
        }
    }
}

/// Where one LB instance stands. Serialized in snake_case (`in_sync`, …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Nothing pushed yet.
    #[default]
    Pending,
    /// The LB holds the desired state.
    InSync,
    /// The last push failed in a way a retry may fix; retrying with backoff.
    Failing,
    /// The LB holds the desired state except items it refused (`quarantined`), which
    /// are sent again only once they change.
    Quarantined,
    /// The LB accepted a newer controller's epoch.
    Fenced,
    /// Another replica leads; this one keeps its caches warm and pushes nothing.
    Standby,
}

/// Where one LB instance stands, for the admin view.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub state: TargetState,
    /// When the current state began (ms since the Unix epoch).
    pub(crate) since_ms: u64,
    pub last_error: Option<String>,
    pub pushes: u64,
    pub failures: u64,
    /// Failures by kind (`LbError::metric_label`: transient, rejected, fenced).
    pub failures_by_kind: BTreeMap<&'static str, u64>,
    /// The LB's generation after podgate's last accepted push.
    pub(crate) generation: u64,
    pub(crate) instance: String,
    /// Items the LB refused, left out until they change.
    pub quarantined: Vec<Quarantined>,
    /// The `Desired::version` the LB holds as far as its last accepted push tells
    /// (refused items aside): an object applied at or before it is live there.
    #[serde(skip)]
    pub(crate) programmed: u64,
    /// When the LB last acknowledged a push (for benchmarks measuring propagation).
    #[serde(skip)]
    pub last_ack: Option<std::time::Instant>,
    /// Whether the LB serves Gateway API rules (`LbAdapter::serves_rules`).
    pub serves_rules: bool,
}

/// A controller's term: `Some(epoch)` while its workers may push (see
/// [`Worker::gated_by`]).
pub type Term = tokio::sync::watch::Receiver<Option<u64>>;

/// Sets the term, waking the workers only when it changes.
pub fn set_term(term: &tokio::sync::watch::Sender<Option<u64>>, value: Option<u64>) {
    term.send_if_modified(|t| {
        let changed = *t != value;
        *t = value;
        changed
    });
}

pub struct Worker {
    adapter: Box<dyn LbAdapter>,
    desired: Arc<Desired>,
    pending: Arc<Pending>,
    status: Arc<Mutex<TargetStatus>>,
    audit: Arc<Audit>,
    config: SyncConfig,
    epoch: u64,
    /// Pushed as `Batch::owner`; a full sync removes only what this owner registered.
    owner: Option<String>,
    acked: Option<StateSummary>,
    metrics: SyncMetrics,
    /// Pushes only during a term (see [`Worker::gated_by`]).
    term: Option<Term>,
    /// Whether the next successful push is the first of a term (its work may have
    /// waited through a standby period: not a convergence time).
    fresh_term: bool,
    /// The upstreams the LB holds as far as acknowledged pushes tell, for patches
    /// (`None`: unknown, or the adapter takes whole upstreams only).
    held: Option<UpstreamMap>,
    /// What the LB refused, item by item.
    quarantine: Quarantine,
}

/// What one push achieved: a refused batch is split until the refused items are found,
/// so part of it may land.
#[derive(Default)]
struct Pushed {
    /// The LB's answer to the last batch it accepted; `None`: it accepted none.
    summary: Option<StateSummary>,
    /// Quarantined items the LB accepted now.
    accepted: std::collections::BTreeSet<Item>,
    /// Items the LB refused on their own, with its answer.
    refused: Vec<(Item, String)>,
}

impl Worker {
    /// Subscribes to `desired`; the first push will be a full sync.
    pub fn new(
        adapter: Box<dyn LbAdapter>,
        desired: Arc<Desired>,
        audit: Arc<Audit>,
        config: SyncConfig,
        epoch: u64,
    ) -> Self {
        let status = TargetStatus {
            name: adapter.name().to_owned(),
            state: TargetState::Pending,
            since_ms: now_ms(),
            serves_rules: adapter.serves_rules(),
            ..TargetStatus::default()
        };
        Self {
            pending: desired.subscribe(),
            adapter,
            desired,
            status: Arc::new(Mutex::new(status)),
            audit,
            config,
            epoch,
            owner: None,
            acked: None,
            metrics: SyncMetrics::default(),
            term: None,
            fresh_term: false,
            held: None,
            quarantine: Quarantine::default(),
        }
    }

    /// Pushes only while `term` holds an epoch, with that epoch, starting each term
    /// with a full sync. The controller gives a term once every cluster has listed (a
    /// first full sync from a half-listed Index would withdraw from the LB everything
    /// the unlisted part holds, e.g. on every restart) and while it leads (only the
    /// Lease holder of several replicas pushes).
    #[must_use]
    pub(crate) fn gated_by(mut self, term: Term) -> Self {
        self.term = Some(term);
        self
    }

    /// Records into shared metrics instead of private ones.
    #[must_use]
    pub(crate) fn with_metrics(mut self, metrics: SyncMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Pushes as `owner`, so that controllers sharing one LB never remove each other's
    /// upstreams or certificates (see `Batch::owner`).
    #[must_use]
    pub(crate) fn owned_by(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn status(&self) -> Arc<Mutex<TargetStatus>> {
        self.status.clone()
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let Some(mut term) = self.term.clone() else {
            self.serve(None).await;
            return;
        };
        loop {
            // A closed channel (its sender dropped): the controller is gone.
            let Ok(epoch) = term.wait_for(Option::is_some).await.map(|e| *e) else {
                return;
            };
            if let Some(epoch) = epoch {
                self.epoch = epoch;
            }
            // What a previous leader pushed in between is unknown: start over.
            self.held = None;
            self.fresh_term = true;
            self.pending.request_full();
            self.serve(Some(&mut term)).await;
            self.set_state(TargetState::Standby, None);
        }
    }

    /// Pushes what changes until `term` (if any) ends or moves to another epoch.
    async fn serve(&mut self, mut term: Option<&mut Term>) {
        let epoch = self.epoch;
        let mut backoff = self.config.backoff_min;
        // A deadline, not a sleep per turn: under steady churn the check still runs.
        let mut drift_at = tokio::time::Instant::now() + self.config.drift_interval;
        loop {
            let ended = async {
                match term.as_deref_mut() {
                    Some(t) => {
                        let _ = t.wait_for(|e| *e != Some(epoch)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // A term that ended wins over pending work: no push with its epoch.
                biased;
                () = ended => return,
                () = self.pending.wait() => {}
                () = tokio::time::sleep_until(drift_at) => {
                    self.check_drift().await;
                    drift_at = tokio::time::Instant::now() + self.config.drift_interval;
                    continue;
                }
            }
            // Read before the inbox is taken: everything up to it is in `work`.
            let version = self.desired.version();
            let work = self.pending.take();
            if work.is_empty() {
                continue;
            }
            match self.push(&work, version).await {
                Ok(()) => backoff = self.config.backoff_min,
                Err(e) => {
                    let state = if matches!(e, LbError::Fenced(_)) {
                        TargetState::Fenced
                    } else {
                        TargetState::Failing
                    };
                    self.set_failed(state, &e);
                    self.pending.restore(work);
                    self.back_off(jitter(backoff), e.is_retryable()).await;
                    backoff = (backoff * 2).min(self.config.backoff_max);
                }
            }
        }
    }

    /// Pushes `work`, taken from the inbox at `version` of the desired state.
    async fn push(&mut self, work: &Work, version: u64) -> Result<(), LbError> {
        let snapshot = self.desired.snapshot();
        let result = if work.full {
            self.push_full(work, &snapshot).await
        } else {
            let mut batch = batch::build_owned(
                work,
                &snapshot,
                None,
                self.epoch,
                self.owner.as_deref(),
                self.held.as_ref(),
            );
            self.quarantine.filter(&mut batch, &snapshot);
            let mut pushed = Pushed::default();
            if batch.is_empty() {
                Ok(pushed)
            } else {
                self.apply_splitting(work, batch, &mut pushed)
                    .await
                    .map(|()| pushed)
            }
        };
        let pushed = match result {
            Ok(pushed) => pushed,
            Err(e) => {
                self.forget_held(work);
                return Err(e);
            }
        };
        self.settle_quarantine(&pushed, &snapshot);
        self.update_held(work, &snapshot);
        let Some(summary) = pushed.summary else {
            // Nothing was accepted: every item was refused, or left out as refused.
            self.status.lock().programmed = version;
            self.set_state(self.settled_state(), None);
            return Ok(());
        };
        let fresh_term = std::mem::take(&mut self.fresh_term);
        if let Some(since) = work.since
            && !fresh_term
        {
            self.metrics
                .convergence
                .observe(since.elapsed().as_secs_f64());
        }
        // The LB restarted since the last push: what we pushed landed on an empty LB.
        let restarted = self
            .acked
            .as_ref()
            .is_some_and(|a| a.instance != summary.instance);
        if restarted && !work.full {
            tracing::warn!(lb = self.adapter.name(), "LB restarted: full resync");
            self.held = None;
            // A new instance (perhaps a new version) may accept what the old refused.
            self.quarantine.clear();
            self.publish_quarantine();
            self.pending.request_full();
        }
        {
            let mut status = self.status.lock();
            status.pushes += 1;
            status.last_ack = Some(std::time::Instant::now());
            status.generation = summary.generation;
            status.instance.clone_from(&summary.instance);
            // A push that landed on a restarted LB left it holding only that push.
            if !restarted || work.full {
                status.programmed = version;
            }
        }
        self.acked = Some(summary);
        self.set_state(self.settled_state(), None);
        Ok(())
    }

    /// `InSync`, or `Quarantined` while the LB refuses some items.
    fn settled_state(&self) -> TargetState {
        if self.quarantine.is_empty() {
            TargetState::InSync
        } else {
            TargetState::Quarantined
        }
    }

    /// Applies `batch`; a batch the LB refuses is split in halves, down to the items it
    /// refuses on their own, so that everything else lands. One refused item among n
    /// costs about 2·log2(n) requests, once: it is then quarantined.
    fn apply_splitting<'a>(
        &'a self,
        work: &'a Work,
        batch: Batch,
        out: &'a mut Pushed,
    ) -> BoxFuture<'a, Result<(), LbError>> {
        Box::pin(async move {
            match self.send(work, &batch).await {
                Ok(summary) => {
                    // Only what was quarantined needs to be known as accepted.
                    if !self.quarantine.is_empty() {
                        let released = quarantine::items(&batch)
                            .into_iter()
                            .filter(|i| self.quarantine.contains(i));
                        out.accepted.extend(released);
                    }
                    out.summary = Some(summary);
                    Ok(())
                }
                Err(LbError::Rejected(reason)) => {
                    if let Some((a, b)) = quarantine::split(&batch) {
                        self.apply_splitting(work, a, out).await?;
                        return self.apply_splitting(work, b, out).await;
                    }
                    let items = quarantine::items(&batch);
                    if items.is_empty() {
                        // Nothing to pin the refusal on: the LB refuses batches as such.
                        return Err(LbError::Rejected(reason));
                    }
                    out.refused
                        .extend(items.into_iter().map(|i| (i, reason.clone())));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Quarantines what the LB refused in `pushed` and releases what it accepted.
    fn settle_quarantine(&mut self, pushed: &Pushed, snapshot: &Snapshot) {
        let released = self.quarantine.release(&pushed.accepted);
        for (item, reason) in &pushed.refused {
            tracing::warn!(
                lb = self.adapter.name(),
                %item,
                error = %reason,
                "LB refused an item: quarantined until it changes"
            );
            self.quarantine
                .insert(item.clone(), reason.clone(), snapshot);
        }
        if !pushed.refused.is_empty() {
            *self
                .status
                .lock()
                .failures_by_kind
                .entry("rejected")
                .or_default() += 1;
        }
        if released || !pushed.refused.is_empty() {
            self.publish_quarantine();
        }
    }

    fn publish_quarantine(&self) {
        self.status.lock().quarantined = self.quarantine.list();
    }

    /// A full sync: what the LB holds is read first (to remove what it should not),
    /// then everything goes, in parts if the adapter takes parts (routes last), without
    /// the quarantined items that did not change.
    async fn push_full(&self, work: &Work, snapshot: &Snapshot) -> Result<Pushed, LbError> {
        let observed = self.adapter.observe_keys().await?;
        let list = snapshot.upstream_list();
        let parts = match self.adapter.full_sync_part() {
            Some(n) => batch::parts(&list, n),
            None => std::iter::once(0..list.len()).collect(),
        };
        let last = parts.len() - 1;
        let mut pushed = Pushed::default();
        for (i, range) in parts.into_iter().enumerate() {
            let mut batch = batch::full_part(
                &list,
                range,
                i == last,
                snapshot,
                Some(&observed),
                self.epoch,
                self.owner.as_deref(),
            );
            self.quarantine.filter(&mut batch, snapshot);
            self.apply_splitting(work, batch, &mut pushed).await?;
        }
        Ok(pushed)
    }

    /// Whether this worker's epoch is still its controller's term (always, ungated).
    fn in_term(&self) -> bool {
        self.term
            .as_ref()
            .is_none_or(|t| *t.borrow() == Some(self.epoch))
    }

    /// Applies one batch and records it in the audit ring.
    async fn send(&self, work: &Work, batch: &Batch) -> Result<StateSummary, LbError> {
        // Checked before every batch, so a term that ends mid full sync (or during a
        // backoff) sends nothing more with its epoch.
        if !self.in_term() {
            return Err(LbError::Fenced(self.epoch));
        }
        let started = std::time::Instant::now();
        let result = self.adapter.apply(batch).await;
        self.audit.record(AuditEntry {
            at_ms: 0,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            target: self.adapter.name().to_owned(),
            full: work.full,
            upserted: batch
                .upsert_upstreams
                .iter()
                .map(|u| &u.key)
                .chain(batch.patch_upstreams.iter().map(|p| &p.key))
                .map(ToString::to_string)
                .collect(),
            removed: batch
                .remove_upstreams
                .iter()
                .map(ToString::to_string)
                .collect(),
            routes: batch.routes.is_some(),
            certificates: batch
                .upsert_certificates
                .iter()
                .map(|c| c.id.clone())
                .collect(),
            causes: work.causes.iter().cloned().collect(),
            result: result
                .as_ref()
                .map_or_else(ToString::to_string, |_| "ok".to_owned()),
        });
        result
    }

    /// A failed push may or may not have landed: its upstreams go whole next time.
    fn forget_held(&mut self, work: &Work) {
        if work.full {
            self.held = None;
        } else if let Some(held) = self.held.as_mut() {
            for key in &work.upstreams {
                held.remove(key);
            }
        }
    }

    /// Follows what the LB holds after a push of `work` built from `snapshot`: what it
    /// accepted. A quarantined upstream is not held in its wanted version, so it goes
    /// whole next time.
    fn update_held(&mut self, work: &Work, snapshot: &Snapshot) {
        if !self.adapter.accepts_patches() {
            return;
        }
        if work.full {
            self.held = Some(snapshot.upstreams.clone());
        }
        let Some(held) = self.held.as_mut() else {
            return;
        };
        if !work.full {
            for key in &work.upstreams {
                match snapshot.upstreams.get(key) {
                    Some(u) => {
                        held.insert(key.clone(), u.clone());
                    }
                    None => {
                        held.remove(key);
                    }
                }
            }
        }
        for key in self.quarantine.upstreams() {
            held.remove(key);
        }
    }

    /// Waits `delay` before the next attempt. With `watch` the LB's summary is read
    /// every `drift_interval` meanwhile, and the wait ends at once when the LB answers
    /// as another instance than the last known one (it restarted) or answers again
    /// after a failed read (it came back): an LB back from an outage is noticed within
    /// `drift_interval`, not after a 30 s backoff. An LB that answers but keeps failing
    /// batches keeps its backoff.
    async fn back_off(&self, delay: Duration, watch: bool) {
        let until = tokio::time::Instant::now() + delay;
        if !watch {
            return tokio::time::sleep_until(until).await;
        }
        let mut known = self.acked.as_ref().map(|a| a.instance.clone());
        let mut was_down = false;
        loop {
            let next = (tokio::time::Instant::now() + self.config.drift_interval).min(until);
            tokio::time::sleep_until(next).await;
            if next >= until {
                return;
            }
            match self.adapter.summary().await {
                Err(_) => was_down = true,
                Ok(now) => {
                    let restarted = known.as_ref().is_some_and(|k| *k != now.instance);
                    if restarted || was_down {
                        tracing::info!(
                            lb = self.adapter.name(),
                            instance = %now.instance,
                            "LB answers again: retrying now"
                        );
                        return;
                    }
                    known = Some(now.instance);
                }
            }
        }
    }

    /// Compares the LB's generation with the last acknowledged one: a different
    /// instance or generation means a restart or another writer, so resync fully.
    async fn check_drift(&mut self) {
        let Some(acked) = &self.acked else { return };
        match self.adapter.summary().await {
            Ok(state)
                if state.instance == acked.instance && state.generation == acked.generation => {}
            Ok(state) => {
                tracing::warn!(
                    lb = self.adapter.name(),
                    instance = %state.instance,
                    generation = state.generation,
                    "LB drifted from what podgate pushed: full resync"
                );
                self.held = None;
                self.pending.request_full();
            }
            Err(e) => self.set_failed(TargetState::Failing, &e),
        }
    }

    fn set_failed(&self, state: TargetState, error: &LbError) {
        *self
            .status
            .lock()
            .failures_by_kind
            .entry(error.metric_label())
            .or_default() += 1;
        self.set_state(state, Some(error.to_string()));
    }

    fn set_state(&self, state: TargetState, error: Option<String>) {
        let mut status = self.status.lock();
        if status.state != state {
            status.state = state;
            status.since_ms = now_ms();
        }
        if error.is_some() {
            status.failures += 1;
            tracing::warn!(lb = %status.name, error = error.as_deref().unwrap_or(""), "push failed");
        }
        status.last_error = error;
    }
}

/// Full jitter in [d/2, d): spreads retries of many controllers apart.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}
