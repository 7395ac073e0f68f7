//! The floor guard's decision: whether a change that withdraws endpoints is applied
//! now or held until a fresh list confirms it. Pure: the caller counts the withdrawal
//! (`Index::relist_withdrawal_prepared`, `Index::slice_withdrawal`,
//! `Index::routable_withdrawal`), passes the time in, and owns the confirmation timer
//! and the list that ends a hold.
//!
//! Rules: a relist that would withdraw more than `fraction` of a cluster's endpoints is
//! held. Watch events within `BURST_WINDOW` of the first add up; a burst of at least
//! `MIN_BURST` endpoints that passes `fraction` is held. A Subnet change is judged like
//! a relist when it comes from a list, like a burst otherwise.

use std::time::{Duration, Instant};

use crate::index::Withdrawal;

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

/// Endpoints withdrawn by watch events since `started`, of `base` at that time.
#[derive(Clone, Copy, Debug)]
struct Burst {
    started: Instant,
    base: usize,
    withdrawn: usize,
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

    /// One watch event at `now` that withdraws `w` (nothing withdrawn: always applied,
    /// and the burst is left as it is).
    pub fn event(&mut self, now: Instant, w: Withdrawal) -> Verdict {
        if w.withdrawn == 0 {
            return Verdict::Apply;
        }
        let mut burst = match self.burst {
            Some(b) if now.duration_since(b.started) < BURST_WINDOW => b,
            _ => Burst {
                started: now,
                base: w.before,
                withdrawn: 0,
            },
        };
        burst.withdrawn += w.withdrawn;
        let total = Withdrawal {
            before: burst.base,
            withdrawn: burst.withdrawn,
        };
        if total.withdrawn >= MIN_BURST && total.exceeds(self.fraction) {
            self.burst = None;
            return Verdict::Hold(total);
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
            assert_eq!(g.event(now, w(20, 1)), Verdict::Apply, "event {i}");
        }
        // The 11th endpoint within the window passes half of the 20 counted at its start.
        assert_eq!(
            g.event(t0 + Duration::from_secs(2), w(10, 1)),
            Verdict::Hold(w(20, 11))
        );
        // Held bursts start over.
        assert_eq!(
            g.event(t0 + Duration::from_secs(3), w(9, 1)),
            Verdict::Apply
        );
    }

    #[test]
    fn a_burst_ends_with_its_window() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for i in 0..10 {
            assert_eq!(g.event(t0, w(20, 1)), Verdict::Apply, "event {i}");
        }
        assert_eq!(g.event(t0 + BURST_WINDOW, w(10, 1)), Verdict::Apply);
    }

    #[test]
    fn a_small_burst_is_never_held() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.1);
        assert_eq!(g.event(t0, w(9, 9)), Verdict::Apply);
    }

    #[test]
    fn events_that_withdraw_nothing_leave_the_burst_alone() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for _ in 0..10 {
            g.event(t0, w(20, 1));
            assert_eq!(g.event(t0, w(0, 0)), Verdict::Apply);
        }
        assert_eq!(g.event(t0, w(10, 1)), Verdict::Hold(w(20, 11)));
    }

    #[test]
    fn a_relist_or_forgetting_ends_the_burst() {
        let t0 = Instant::now();
        let mut g = FloorGuard::new(0.5);
        for _ in 0..10 {
            g.event(t0, w(20, 1));
        }
        g.forget_burst();
        assert_eq!(g.event(t0, w(10, 1)), Verdict::Apply);
    }

    #[test]
    fn subnets_from_a_list_are_judged_like_a_relist() {
        let g = FloorGuard::new(0.5);
        assert_eq!(g.routable(w(4, 3), true), Verdict::Hold(w(4, 3)));
        assert_eq!(g.routable(w(4, 3), false), Verdict::Apply);
        assert_eq!(g.routable(w(20, 11), false), Verdict::Hold(w(20, 11)));
    }
}
