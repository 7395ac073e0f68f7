//! Hold-down (failover damping): a cluster that recovers Active endpoints for an
//! upstream after having lost them stays out of that upstream until released, so a
//! flapping cluster does not churn the LB.
//!
//! Owns: the per-(upstream, cluster) state machine and the hold generations. Pure: it
//! never measures time; the caller releases a hold (by generation) when its timer ends.
//! Never holds a cluster out when no other cluster serves the upstream: serving beats
//! answering 503.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::{ClusterName, EndpointState, Upstream, UpstreamKey};

use super::records::Map;
use super::{Changes, Dirty, Index};

/// One (upstream, cluster) pair kept out of its upstream until released. A newer hold
/// of the same pair (a flap) has a higher generation; releasing an older one does
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Hold {
    pub upstream: UpstreamKey,
    pub cluster: ClusterName,
    pub generation: u64,
}

/// Where one cluster stands in one upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Had Active endpoints and has them now.
    Serving,
    /// Had Active endpoints and has none now.
    Lost,
    /// Recovered after `Lost`; kept out until the hold of this generation is released.
    Held(u64),
}

/// Hold-down state of every upstream. Empty and inert unless enabled.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    enabled: bool,
    next: u64,
    states: Map<UpstreamKey, Vec<(ClusterName, State)>>,
}

impl Holds {
    /// Moves each cluster of `key` through the state machine, given the clusters that
    /// have Active endpoints in `raw` (the upstream computed without holds). Records new
    /// holds in `started`; returns the clusters to keep out now.
    pub(crate) fn observe(
        &mut self,
        raw: &Upstream,
        started: &mut BTreeSet<Hold>,
    ) -> Vec<ClusterName> {
        if !self.enabled {
            return Vec::new();
        }
        let mut active: Vec<&ClusterName> = raw.active().map(|e| &e.cluster).collect();
        active.dedup();
        let states = self.states.entry(raw.key.clone()).or_default();
        // Clusters that were Serving/Held and have no Active endpoint now.
        for (cluster, state) in states.iter_mut() {
            if !active.contains(&&*cluster) {
                *state = State::Lost;
            }
        }
        let mut new_holds = Vec::new();
        for cluster in active {
            match states.iter_mut().find(|(c, _)| c == cluster) {
                // First appearance: no hold.
                None => states.push((cluster.clone(), State::Serving)),
                Some((_, state @ State::Lost)) => {
                    self.next += 1;
                    *state = State::Held(self.next);
                    new_holds.push(Hold {
                        upstream: raw.key.clone(),
                        cluster: cluster.clone(),
                        generation: self.next,
                    });
                }
                Some(_) => {}
            }
        }
        let serving = states.iter().any(|(_, s)| *s == State::Serving);
        if serving {
            started.extend(new_holds);
        } else {
            // Nobody else carries the traffic: release every hold at once.
            for (_, state) in states.iter_mut() {
                if matches!(state, State::Held(_)) {
                    *state = State::Serving;
                }
            }
            return Vec::new();
        }
        states
            .iter()
            .filter(|(_, s)| matches!(s, State::Held(_)))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Whether `hold` is still in force (not superseded, not released).
    fn release(&mut self, hold: &Hold) -> bool {
        let Some(states) = self.states.get_mut(&hold.upstream) else {
            return false;
        };
        match states.iter_mut().find(|(c, _)| *c == hold.cluster) {
            Some((_, state)) if *state == State::Held(hold.generation) => {
                *state = State::Serving;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn forget(&mut self, key: &UpstreamKey) {
        self.states.remove(key);
    }

    fn list(&self) -> Vec<Hold> {
        let mut out: Vec<Hold> = self
            .states
            .iter()
            .flat_map(|(key, states)| {
                states.iter().filter_map(|(cluster, s)| match s {
                    State::Held(generation) => Some(Hold {
                        upstream: key.clone(),
                        cluster: cluster.clone(),
                        generation: *generation,
                    }),
                    _ => None,
                })
            })
            .collect();
        out.sort();
        out
    }
}

impl Index {
    /// Turns hold-down on or off. Off (the default) keeps no state: a recovering cluster
    /// takes its share back at once. Turning it off releases every hold.
    pub(super) fn set_hold_down(&mut self, enabled: bool) -> Changes {
        if self.holds.enabled == enabled {
            return Changes::default();
        }
        // Off: the held upstreams take their clusters back. On: every upstream records
        // which clusters serve now, so that a later loss and recovery is noticed.
        let upstreams: BTreeSet<UpstreamKey> = if enabled {
            self.upstream_refs.keys().cloned().collect()
        } else {
            self.holds.list().into_iter().map(|h| h.upstream).collect()
        };
        self.holds = Holds {
            enabled,
            ..Holds::default()
        };
        self.settle(Dirty {
            upstreams,
            ..Dirty::default()
        })
    }

    /// Ends `hold`: the cluster takes its share of the upstream back. Does nothing when
    /// the hold was superseded by a newer one (the cluster flapped) or already ended.
    pub(super) fn release_hold(&mut self, hold: &Hold) -> Changes {
        if !self.holds.release(hold) {
            return Changes::default();
        }
        self.settle(Dirty {
            upstreams: BTreeSet::from([hold.upstream.clone()]),
            ..Dirty::default()
        })
    }

    /// Every hold in force, sorted.
    pub fn holds(&self) -> Vec<Hold> {
        self.holds.list()
    }
}

/// Whether an endpoint of `cluster` in state `state` is left out because the cluster is
/// held.
pub(crate) fn held_out(held: &[ClusterName], cluster: &ClusterName, state: EndpointState) -> bool {
    state == EndpointState::Active && held.contains(cluster)
}
