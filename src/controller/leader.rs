//! Leader election through a `coordination.k8s.io/v1` Lease in the home cluster: of
//! several replicas one pushes to the LBs; the others keep warm caches (their watchers
//! and Index run) and take over when the leader stops renewing.
//!
//! Owns: acquiring, renewing and losing the Lease, and the leader's fencing epoch. The
//! epoch lives in the Lease (annotation `podgate.io/epoch`) and grows with every new
//! holder, so the LBs refuse a deposed leader's pushes (409) once its successor has
//! pushed, whatever the hosts' clocks say. Expiry is judged on this replica's own
//! clock, from when it last saw the Lease change (as client-go does), never by
//! comparing another host's timestamps.
//!
//! Unlike client-go, a leader that cannot reach the Lease's API server keeps leading
//! when every LB it pushes to fences by epoch itself (the LB contract does): podgate
//! must keep working while one cluster's API server is down, and stepping down would
//! freeze every LB (no replica could take the Lease either). A replica that can reach
//! the Lease takes it once it looks stale, and its first push fences this one. With an
//! LB that does not fence (HAProxy, Caddy), a leader that could not renew for two
//! thirds of `lease_duration` steps down, as client-go's does, before anyone can take
//! over. A replica takes the Lease over only once every cluster has listed (a warm
//! standby, not a pod that just started, should win).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::LeaderElectionConfig;
use crate::sync::set_term;

const EPOCH_ANNOTATION: &str = "podgate.io/epoch";

/// The Lease as read.
#[derive(Debug)]
struct Seen {
    holder: Option<String>,
    resource_version: Option<String>,
    epoch: u64,
    transitions: i32,
    /// The holder's own `leaseDurationSeconds`.
    duration: Duration,
}

impl Seen {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            resource_version: lease.metadata.resource_version.clone(),
            epoch: lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EPOCH_ANNOTATION))
                .and_then(|e| e.parse().ok())
                .unwrap_or(0),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
            duration: Duration::from_secs(
                spec.and_then(|s| s.lease_duration_seconds)
                    .and_then(|d| u64::try_from(d).ok())
                    .unwrap_or(0),
            ),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Renew,
    TakeOver,
    Standby,
}

/// `unchanged_for`: how long the Lease has looked the same to this replica. A holder
/// that announced a longer lease than ours gets it.
fn decide(seen: &Seen, me: &str, unchanged_for: Duration, lease_duration: Duration) -> Step {
    match &seen.holder {
        Some(holder) if holder == me => Step::Renew,
        Some(_) if unchanged_for < lease_duration.max(seen.duration) => Step::Standby,
        _ => Step::TakeOver,
    }
}

/// Why one round of the campaign did not get an answer.
#[derive(Debug, thiserror::Error)]
enum CampaignError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer from the API server in time")]
    TimedOut,
}

/// The controller's side of a graceful resignation (see [`Controller::shutdown`]).
///
/// [`Controller::shutdown`]: super::Controller::shutdown
pub(crate) struct Resign {
    ask: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>,
}

/// The campaign's side: asked once, answers when the Lease is handed back.
pub(super) type Resigned = tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>;

impl Resign {
    pub(super) fn new() -> (Self, Resigned) {
        let (ask, asked) = tokio::sync::oneshot::channel();
        (Self { ask }, asked)
    }

    /// Stops pushing and releases the Lease if held; waits at most `timeout`.
    pub(super) async fn resign(self, timeout: Duration) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.ask.send(done).is_ok() {
            let _ = tokio::time::timeout(timeout, finished).await;
        }
    }
}

/// What the campaign needs besides the Lease's API.
pub(super) struct Campaigner {
    pub(super) config: LeaderElectionConfig,
    /// Whether every cluster has listed: only then may this replica take over.
    pub(super) listed: watch::Receiver<bool>,
    /// Every LB target fences by epoch itself (see the module comment).
    pub(super) lbs_fence: bool,
    pub(super) resigned: Resigned,
}

/// Campaigns for the Lease until the task is dropped, publishing this replica's term.
pub(super) async fn run(api: Api<Lease>, campaigner: Campaigner, term: watch::Sender<Option<u64>>) {
    let Campaigner {
        config,
        listed,
        lbs_fence,
        mut resigned,
    } = campaigner;
    let me = config.identity();
    // Before anyone could take over (client-go's renew deadline), when an LB does not
    // fence a leader that lost the Lease.
    let step_down_after = (!lbs_fence).then(|| config.lease_duration * 2 / 3);
    // Long enough for a slow API server, short enough to renew in time.
    let request_timeout = config.lease_duration / 3;
    let mut campaign = Campaign {
        api,
        me,
        config,
        listed,
        last_seen: None,
        max_epoch: 0,
    };
    let mut renewed_at: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let outcome = tokio::time::timeout(request_timeout, campaign.attempt())
            .await
            .unwrap_or(Err(CampaignError::TimedOut));
        let leading = term.borrow().is_some();
        match outcome {
            Ok(Some(epoch)) => {
                renewed_at = Some(started);
                if !leading {
                    tracing::info!(identity = %campaign.me, epoch, "leading: pushing to the LBs");
                }
                set_term(&term, Some(epoch));
            }
            Ok(None) => {
                renewed_at = None;
                if leading {
                    tracing::warn!(identity = %campaign.me, "lost the lease: standing by");
                }
                set_term(&term, None);
            }
            Err(e) => {
                tracing::warn!(identity = %campaign.me, error = %e, leading, "lease request failed");
                let overdue = renewed_at
                    .zip(step_down_after)
                    .is_some_and(|(at, after)| at.elapsed() >= after);
                if leading && overdue {
                    renewed_at = None;
                    tracing::warn!(identity = %campaign.me, "could not renew the lease in time and an LB does not fence: standing by");
                    set_term(&term, None);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(campaign.config.retry_period) => {}
            asked = &mut resigned => {
                // Workers stop first, then the Lease goes: no push from here after the
                // successor's first one.
                term.send_replace(None);
                if let Err(e) = tokio::time::timeout(request_timeout, campaign.release()).await
                    .unwrap_or(Err(CampaignError::TimedOut))
                {
                    tracing::warn!(identity = %campaign.me, error = %e, "could not release the lease");
                }
                if let Ok(done) = asked {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

struct Campaign {
    api: Api<Lease>,
    me: String,
    config: LeaderElectionConfig,
    listed: watch::Receiver<bool>,
    /// The Lease's last resourceVersion and when this replica first saw it.
    last_seen: Option<(Option<String>, Instant)>,
    /// The highest epoch seen in the Lease or written by this replica: epochs never go
    /// back, even if the Lease is deleted or its annotation lost, or a clock steps back.
    max_epoch: u64,
}

impl Campaign {
    /// One round: `Some(epoch)` if this replica holds the Lease afterwards.
    async fn attempt(&mut self) -> Result<Option<u64>, CampaignError> {
        let read = self.api.get_opt(&self.config.name).await?;
        // After the answer: a slow read must not make the Lease look older than it is.
        let now = Instant::now();
        let listed = *self.listed.borrow();
        let Some(lease) = read else {
            if !listed {
                return Ok(None);
            }
            let epoch = self.next_epoch(0);
            let lease = self.lease(ObjectMeta::default(), epoch, 0, None);
            let created = self.api.create(&PostParams::default(), &lease).await;
            return Ok(self.write(created, epoch)?);
        };
        let seen = Seen::of(&lease);
        let unchanged_since = match &self.last_seen {
            Some((rv, since)) if *rv == seen.resource_version => *since,
            _ => now,
        };
        self.last_seen = Some((seen.resource_version.clone(), unchanged_since));
        let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
        let (epoch, transitions, acquired) = match decide(
            &seen,
            &self.me,
            now - unchanged_since,
            self.config.lease_duration,
        ) {
            Step::Standby => return Ok(None),
            Step::TakeOver if !listed => return Ok(None),
            // A lost or lowered annotation is written back with the epoch in force.
            Step::Renew => (seen.epoch.max(self.max_epoch), seen.transitions, acquired),
            Step::TakeOver => {
                tracing::info!(identity = %self.me, previous = ?seen.holder, "taking over the lease");
                let epoch = self.next_epoch(seen.epoch);
                (epoch, seen.transitions.saturating_add(1), None)
            }
        };
        let lease = self.lease(lease.metadata, epoch, transitions, acquired);
        let written = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await;
        Ok(self.write(written, epoch)?)
    }

    /// Hands the Lease back if this replica holds it: no holder, the epoch kept, so a
    /// standby takes over at its next read.
    async fn release(&mut self) -> Result<(), CampaignError> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(identity = %self.me, "released the lease");
        Ok(())
    }

    /// A new holder's epoch: above every epoch seen, even if this host's clock is behind.
    fn next_epoch(&self, seen: u64) -> u64 {
        crate::clock::now_ms().max(seen.max(self.max_epoch) + 1)
    }

    /// A write's outcome: a conflict means another replica wrote first.
    fn write(
        &mut self,
        written: Result<Lease, kube::Error>,
        epoch: u64,
    ) -> Result<Option<u64>, kube::Error> {
        match written {
            Ok(_) => {
                self.max_epoch = self.max_epoch.max(epoch);
                Ok(Some(epoch))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The Lease held by this replica (since `acquired`, or now); `metadata` keeps the
    /// resourceVersion read, so a concurrent writer makes the write fail with 409.
    fn lease(
        &self,
        mut metadata: ObjectMeta,
        epoch: u64,
        transitions: i32,
        acquired: Option<MicroTime>,
    ) -> Lease {
        metadata.name = Some(self.config.name.clone());
        metadata.namespace = Some(self.config.namespace.clone());
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(EPOCH_ANNOTATION.to_owned(), epoch.to_string());
        let now = MicroTime(jiff::Timestamp::now());
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.me.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>) -> Seen {
        Seen {
            holder: holder.map(str::to_owned),
            resource_version: Some("1".into()),
            epoch: 5,
            transitions: 0,
            duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_held_lease_is_taken_over_only_once_it_looked_the_same_for_a_whole_term() {
        let d = Duration::from_secs(15);
        assert_eq!(
            decide(&seen(Some("me")), "me", Duration::ZERO, d),
            Step::Renew
        );
        assert_eq!(
            decide(&seen(Some("other")), "me", Duration::from_secs(14), d),
            Step::Standby
        );
        assert_eq!(
            decide(&seen(Some("other")), "me", Duration::from_secs(15), d),
            Step::TakeOver
        );
        assert_eq!(decide(&seen(None), "me", Duration::ZERO, d), Step::TakeOver);
        // A holder announcing 15 s keeps it against a standby configured for 5 s.
        let short = Duration::from_secs(5);
        assert_eq!(
            decide(&seen(Some("other")), "me", Duration::from_secs(10), short),
            Step::Standby
        );
    }

    /// A leader on a simulated API server; the term it publishes.
    async fn leader(
        sim: &podgate_sim::SimCluster,
        lbs_fence: bool,
    ) -> (Resign, watch::Receiver<Option<u64>>) {
        let api = Api::namespaced(sim.client().unwrap(), "default");
        let config = LeaderElectionConfig {
            lease_duration: Duration::from_millis(900),
            retry_period: Duration::from_millis(100),
            identity: Some("solo".into()),
            namespace: "default".into(),
            ..LeaderElectionConfig::new()
        };
        let (_, listed) = watch::channel(true);
        let (tx, mut rx) = watch::channel(None);
        let (resign, resigned) = Resign::new();
        tokio::spawn(run(
            api,
            Campaigner {
                config,
                listed,
                lbs_fence,
                resigned,
            },
            tx,
        ));
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some))
            .await
            .expect("leading within 10 s")
            .unwrap();
        (resign, rx)
    }

    #[tokio::test]
    async fn cut_off_from_the_lease_a_leader_steps_down_only_if_an_lb_does_not_fence() {
        let sim = podgate_sim::SimCluster::start("home", podgate_sim::SimOptions::default())
            .await
            .unwrap();
        let (_fencing, mut fencing_term) = leader(&sim, true).await;
        // 500: not retried by the kube client, so each round fails at once.
        sim.fail_with(500);
        // Without fencing LBs, a replica cut off steps down before anyone can take over.
        let sim2 = podgate_sim::SimCluster::start("home2", podgate_sim::SimOptions::default())
            .await
            .unwrap();
        let (_plain, mut plain_term) = leader(&sim2, false).await;
        sim2.fail_with(500);
        tokio::time::timeout(
            Duration::from_secs(10),
            plain_term.wait_for(Option::is_none),
        )
        .await
        .expect("stepped down within 10 s")
        .unwrap();
        // By then the other leader has gone as long without renewing, and still leads.
        assert!(fencing_term.borrow_and_update().is_some());
    }
}
