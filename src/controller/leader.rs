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
//! Unlike client-go, a leader that cannot reach the Lease's API server keeps leading:
//! podgate must keep working while one cluster's API server is down, and stepping down
//! would freeze every LB (no replica could take the Lease either). That is safe
//! because of the epoch: a replica that can reach the Lease takes it once it looks
//! stale, and its first push fences this one. A leader steps down only when it reads
//! the Lease held by another or loses a write race for it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::LeaderElectionConfig;

const EPOCH_ANNOTATION: &str = "podgate.io/epoch";

/// The Lease as read.
#[derive(Debug)]
struct Seen {
    holder: Option<String>,
    resource_version: Option<String>,
    epoch: u64,
    transitions: i32,
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

/// `unchanged_for`: how long the Lease has looked the same to this replica.
fn decide(seen: &Seen, me: &str, unchanged_for: Duration, lease_duration: Duration) -> Step {
    match &seen.holder {
        Some(holder) if holder == me => Step::Renew,
        Some(_) if unchanged_for < lease_duration => Step::Standby,
        _ => Step::TakeOver,
    }
}

/// Campaigns for the Lease until the task is dropped, publishing this replica's term.
pub(super) async fn run(
    api: Api<Lease>,
    config: LeaderElectionConfig,
    term: watch::Sender<Option<u64>>,
) {
    let me = config.identity();
    let mut campaign = Campaign {
        api,
        me,
        config,
        last_seen: None,
    };
    loop {
        let now = Instant::now();
        let outcome = campaign.attempt(now).await;
        let leading = term.borrow().is_some();
        match outcome {
            Ok(Some(epoch)) => {
                if !leading {
                    tracing::info!(identity = %campaign.me, epoch, "leading: pushing to the LBs");
                }
                term.send_if_modified(|t| replace(t, Some(epoch)));
            }
            Ok(None) => {
                if leading {
                    tracing::warn!(identity = %campaign.me, "lost the lease: standing by");
                }
                term.send_if_modified(|t| replace(t, None));
            }
            Err(e) => {
                // Keep the term (see the module comment): the epoch protects the LBs.
                tracing::warn!(identity = %campaign.me, error = %e, leading, "lease request failed");
            }
        }
        tokio::time::sleep(campaign.config.retry_period).await;
    }
}

fn replace(slot: &mut Option<u64>, value: Option<u64>) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

struct Campaign {
    api: Api<Lease>,
    me: String,
    config: LeaderElectionConfig,
    /// The Lease's last resourceVersion and when this replica first saw it.
    last_seen: Option<(Option<String>, Instant)>,
}

impl Campaign {
    /// One round: `Some(epoch)` if this replica holds the Lease afterwards.
    async fn attempt(&mut self, now: Instant) -> Result<Option<u64>, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let epoch = crate::sync::audit::now_ms();
            let lease = self.lease(ObjectMeta::default(), epoch, 0, None);
            return Self::write(self.api.create(&PostParams::default(), &lease).await, epoch);
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
            Step::Renew => (seen.epoch, seen.transitions, acquired),
            Step::TakeOver => {
                tracing::info!(identity = %self.me, previous = ?seen.holder, "taking over the lease");
                // Above every earlier holder's epoch even if this host's clock is behind.
                let epoch = crate::sync::audit::now_ms().max(seen.epoch + 1);
                (epoch, seen.transitions.saturating_add(1), None)
            }
        };
        let lease = self.lease(lease.metadata, epoch, transitions, acquired);
        let written = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await;
        Self::write(written, epoch)
    }

    /// A write's outcome: a conflict means another replica wrote first.
    fn write(written: Result<Lease, kube::Error>, epoch: u64) -> Result<Option<u64>, kube::Error> {
        match written {
            Ok(_) => Ok(Some(epoch)),
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
    }
}
