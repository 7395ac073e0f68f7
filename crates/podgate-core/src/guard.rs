//! The floor guard's decision: whether a change that withdraws endpoints is applied
//! now or held until a fresh list confirms it. Pure: the caller counts the withdrawal
//! (`Index::relist_withdrawal_prepared`, `Index::slice_withdrawal`,
//! `Index::routable_withdrawal`), passes the time in, and owns the confirmation timer
//! and the list that ends a hold.
//!
//! Rules: a relist that would withdraw more than `fraction` of a cluster's endpoints is
//! held. Watch events within `BURST_WINDOW` of the first withdrawal add up *net*: what
//! they withdraw minus what they add, so a rolling update (one pod in, one out) or a
//! flapping readiness probe never adds up to anything; a burst whose net withdrawal
//! reaches `MIN_BURST` endpoints and passes `fraction` of the cluster's size when the
//! burst began is held. A Subnet change is judged like a relist when it comes from a
//! list, like a burst otherwise.

use std::time::{Duration, Instant};

use crate::index::{SliceChange, Withdrawal};

/// Withdrawals by watch events this close together count as one burst.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);

/// A burst withdrawing fewer endpoints than this is never held. Watch events are the
/// API server's own word (unlike a possibly partial relist), and a small app scaled to
/// zero in a small cluster must fail over at once, not after `confirm_after`.
pub const MIN_BURST: usize = 10;

/// What to do with one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Apply,
    /// Hold it: together with the burst it ends, it withdraws this much.
    Hold(Withdrawal),
}

/// Endpoints withdrawn and added by watch events since `started`, of `base` at that
/// time.
#[derive(Clone, Copy, Debug)]
struct Burst {
    started: Instant,
    base: usize,
    withdrawn: usize,
    added: usize,
}

impl Burst {
    /// What is gone at once: withdrawn, net of what came meanwhile.
    fn missing(&self) -> Withdrawal {
        Withdrawal {
            before: self.base,
            withdrawn: self.withdrawn.saturating_sub(self.added),
        }
    }
}

/// One cluster's floor guard. See the module documentation.
#[derive(Clone, Debug)]
pub struct FloorGuard {
    fraction: f64,
    burst: Option<Burst>,
}

impl FloorGuard {
    /// A guard that holds withdrawals of more than `fraction` (0.0–1.0; 1.0 or more
    /// never holds).
    pub fn new(fraction: f64) -> Self {
        Self {
            fraction,
            burst: None,
        }
    }

    /// A completed relist: it replaces whatever came before, burst included.
    pub fn relist(&mut self, w: Withdrawal) -> Verdict {
        self.burst = None;
        if w.exceeds(self.fraction) {
            Verdict::Hold(w)
        } else {
            Verdict::Apply
        }
    }

    /// One watch event at `now`. An event that withdraws nothing is applied; what it
    /// adds counts against the burst in progress.
    pub fn event(&mut self, now: Instant, change: SliceChange) -> Verdict {
        let current = self
            .burst
            .filter(|b| now.duration_since(b.started) < BURST_WINDOW);
        if change.withdrawn == 0 {
            self.burst = current.map(|b| Burst {
                added: b.added + change.added,
                ..b
            });
            return Verdict::Apply;
        }
        let mut burst = current.unwrap_or(Burst {
            started: now,
            base: change.before,
            withdrawn: 0,
            added: 0,
        });
        burst.withdrawn += change.withdrawn;
        burst.added += change.added;
        let missing = burst.missing();
        if missing.withdrawn >= MIN_BURST && missing.exceeds(self.fraction) {
            self.burst = None;
            return Verdict::Hold(missing);
        }
        self.burst = Some(burst);
        Verdict::Apply
    }

    /// A change of a cluster's routable CIDRs that makes `w` unroutable; `listed`: it
    /// comes from a (re)list rather than a watch event.
    pub fn routable(&self, w: Withdrawal, listed: bool) -> Verdict {
        let guarded = listed || w.withdrawn >= MIN_BURST;
        if guarded && w.exceeds(self.fraction) {
            Verdict::Hold(w)
        } else {
            Verdict::Apply
        }
    }

    /// Whether `w` passes the fraction (what a relist withdrawing it would be held for).
    pub fn exceeded(&self, w: Withdrawal) -> bool {
        w.exceeds(self.fraction)
    }

    /// Forgets the burst in progress (a hold ended or was replaced).
    pub fn forget_burst(&mut self) {
        self.burst = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(before: usize, withdrawn: usize) -> Withdrawal {
        Withdrawal { before, withdrawn }
    }

    /// A watch event on a cluster of `before` endpoints.
    fn ev(before: usize, withdrawn: usize, added: usize) -> SliceChange {
        SliceChange {
            before,
            withdrawn,
            added,
        }
    }

    #[test]
    fn a_relist_is_held_past_the_fraction_only() {
        let mut g = FloorGuard::new(0.5);
        assert_eq!(g.relist(w(20, 10)), Verdict::Apply);
        assert_eq!(g.relist(w(20, 11)), Verdict::Hold(w(20, 11)));
        assert_eq!(FloorGuard::new(1.0).relist(w(20, 20)), Verdict::Apply);
    }

    #[test]
    fn events_in_one_window_add_up_to_a_burst() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for i in 0..10 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(g.event(now, ev(20, 1, 0)), Verdict::Apply, "event {i}");
        }
        // The 11th endpoint within the window passes half of the 20 counted at its start.
        assert_eq!(
            g.event(t0 + Duration::from_secs(2), ev(10, 1, 0)),
            Verdict::Hold(w(20, 11))
        );
        // Held bursts start over.
        assert_eq!(
            g.event(t0 + Duration::from_secs(3), ev(9, 1, 0)),
            Verdict::Apply
        );
    }

    #[test]
    fn a_burst_ends_with_its_window() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for i in 0..10 {
            assert_eq!(g.event(t0, ev(20, 1, 0)), Verdict::Apply, "event {i}");
        }
        assert_eq!(g.event(t0 + BURST_WINDOW, ev(10, 1, 0)), Verdict::Apply);
    }

    #[test]
    fn a_small_burst_is_never_held() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.1);
        assert_eq!(g.event(t0, ev(9, 9, 0)), Verdict::Apply);
    }

    #[test]
    fn events_that_withdraw_nothing_leave_the_burst_alone() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for _ in 0..10 {
            g.event(t0, ev(20, 1, 0));
            assert_eq!(g.event(t0, ev(0, 0, 0)), Verdict::Apply);
        }
        assert_eq!(g.event(t0, ev(10, 1, 0)), Verdict::Hold(w(20, 11)));
    }

    #[test]
    fn a_relist_or_forgetting_ends_the_burst() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for _ in 0..10 {
            g.event(t0, ev(20, 1, 0));
        }
        g.forget_burst();
        assert_eq!(g.event(t0, ev(10, 1, 0)), Verdict::Apply);
    }

    #[test]
    fn a_rolling_update_or_a_flapping_probe_never_adds_up() {
        // One of 22 in and one out, 30 times within the window (issue 12, fault 1).
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for i in 0..30 {
            let now = t0 + Duration::from_millis(300 * i);
            assert_eq!(g.event(now, ev(22, 0, 1)), Verdict::Apply, "round {i} in");
            assert_eq!(g.event(now, ev(23, 1, 0)), Verdict::Apply, "round {i} out");
        }
        // The same pod flapping: not ready, ready again.
        for i in 0..30 {
            let now = t0 + Duration::from_millis(300 * i);
            assert_eq!(g.event(now, ev(22, 1, 0)), Verdict::Apply, "flap {i} down");
            assert_eq!(g.event(now, ev(21, 0, 1)), Verdict::Apply, "flap {i} up");
        }
    }

    #[test]
    fn a_mass_withdrawal_is_held_even_among_additions() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        // Of twenty, one goes, three come, then thirteen more go: eleven are missing.
        assert_eq!(g.event(t0, ev(20, 1, 0)), Verdict::Apply);
        for _ in 0..3 {
            assert_eq!(g.event(t0, ev(19, 0, 1)), Verdict::Apply);
        }
        for i in 0..12 {
            assert_eq!(g.event(t0, ev(22, 1, 0)), Verdict::Apply, "withdrawal {i}");
        }
        assert_eq!(g.event(t0, ev(10, 1, 0)), Verdict::Hold(w(20, 11)));
    }

    #[test]
    fn subnets_from_a_list_are_judged_like_a_relist() {
        let g = FloorGuard::new(0.5);
        assert_eq!(g.routable(w(4, 3), true), Verdict::Hold(w(4, 3)));
        assert_eq!(g.routable(w(4, 3), false), Verdict::Apply);
        assert_eq!(g.routable(w(20, 11), false), Verdict::Hold(w(20, 11)));
    }
}
