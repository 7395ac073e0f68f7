//! A migration: an application's traffic moves to one target cluster in steps of
//! `step` percent, one step every `every_ms`. Stored as JSON in the weights ConfigMap so
//! that any controller replica, or a restarted one, continues where it stood.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ClusterName;
use crate::model::shares::{ClusterWeights, apportion};

/// Shortest interval between steps: a ramp faster than the LB push is pointless.
pub const MIN_EVERY: Duration = Duration::from_millis(50);

/// One migration's persistent state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The cluster that receives the traffic.
    pub target: ClusterName,
    /// Percent of the traffic moved per step, 1–100.
    pub step: u32,
    /// Interval between steps, in milliseconds.
    pub every_ms: u64,
    /// The target's current percentage of the application's traffic.
    pub percent: u32,
    /// The other clusters' relative weights when the migration began: they share what
    /// the target does not take, in this proportion.
    pub from: BTreeMap<ClusterName, u32>,
    /// When the last step was taken (ms since the Unix epoch); `None` before the first.
    #[serde(default)]
    pub last_step_ms: Option<u64>,
    /// Paused by an operator: no step is taken until it is resumed (then the next one
    /// waits a whole interval).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Why a migration is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("invalid migration: {0}")]
    Invalid(String),
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    #[error("step {0} is not between 1 and 100")]
    Step(u32),
    #[error("every {every_ms}ms is shorter than {min}")]
    TooFast { every_ms: u64, min: String },
    #[error("percent {0} is above 100")]
    Percent(u32),
    #[error("the target cluster cannot also be a source")]
    TargetIsSource,
}

impl Migration {
    /// A migration that has taken no step yet.
    pub fn new(
        target: ClusterName,
        step: u32,
        every: Duration,
        percent: u32,
        from: BTreeMap<ClusterName, u32>,
    ) -> Result<Self, MigrationError> {
        let m = Self {
            target,
            step,
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            percent: percent.min(100),
            from,
            last_step_ms: None,
            held: false,
        };
        m.validate()?;
        Ok(m)
    }

    /// Parses the ConfigMap value and checks it against the configured clusters.
    pub fn from_json(raw: &str, clusters: &[ClusterName]) -> Result<Self, MigrationError> {
        let m: Self =
            serde_json::from_str(raw).map_err(|e| MigrationError::Invalid(e.to_string()))?;
        m.validate()?;
        for c in m.from.keys().chain([&m.target]) {
            if !clusters.contains(c) {
                return Err(MigrationError::UnknownCluster(c.as_str().to_owned()));
            }
        }
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), MigrationError> {
        if !(1..=100).contains(&self.step) {
            return Err(MigrationError::Step(self.step));
        }
        if self.every_ms < u64::try_from(MIN_EVERY.as_millis()).unwrap_or(0) {
            return Err(MigrationError::TooFast {
                every_ms: self.every_ms,
                min: format_duration(MIN_EVERY),
            });
        }
        if self.percent > 100 {
            return Err(MigrationError::Percent(self.percent));
        }
        if self.from.contains_key(&self.target) {
            return Err(MigrationError::TargetIsSource);
        }
        Ok(())
    }

    /// Whether the ramp reached the target.
    pub fn done(&self) -> bool {
        self.percent >= 100
    }

    /// When the next step is due (ms since the Unix epoch); `None` when done.
    pub fn due_at_ms(&self) -> Option<u64> {
        if self.done() {
            return None;
        }
        Some(
            self.last_step_ms
                .map_or(0, |t| t.saturating_add(self.every_ms)),
        )
    }

    /// The migration after one more step taken at `now_ms`.
    pub fn stepped(&self, now_ms: u64) -> Self {
        Self {
            percent: (self.percent + self.step).min(100),
            last_step_ms: Some(now_ms),
            ..self.clone()
        }
    }

    /// The application's cluster weights at the current percentage (they sum to 100):
    /// the target takes `percent`, the others share the rest as they did at the start.
    pub fn weights(&self) -> ClusterWeights {
        let mut from: Vec<u32> = self.from.values().copied().collect();
        if from.iter().all(|w| *w == 0) {
            from.fill(1);
        }
        let rest = if self.from.is_empty() {
            0
        } else {
            100 - self.percent
        };
        let parts = apportion(&from, rest);
        let mut weights: Vec<(ClusterName, u32)> = self.from.keys().cloned().zip(parts).collect();
        weights.push((self.target.clone(), 100 - rest));
        ClusterWeights(weights)
    }
}

/// What a migration does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// It reached 100 %.
    Done,
    /// The target has no Active endpoint for the application: no step.
    Paused,
    /// The next step is due in this many milliseconds.
    Wait(u64),
    /// Take this step now.
    Step(Migration),
}

/// What the ramp remembers of one migration besides what is stored: whether it was
/// paused, and the earliest time of the next step after a pause.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pacing {
    pub paused: bool,
    pub not_before_ms: u64,
}

impl Migration {
    /// Decides the next move at `now_ms`. While the target has no Active endpoint
    /// nothing moves; once it has one again, it gets a full interval at the current
    /// step before the next one.
    pub fn next(&self, now_ms: u64, target_active: bool, pacing: &mut Pacing) -> Next {
        let Some(due) = self.due_at_ms() else {
            pacing.paused = false;
            return Next::Done;
        };
        if !target_active || self.held {
            pacing.paused = true;
            return Next::Paused;
        }
        if pacing.paused {
            pacing.paused = false;
            pacing.not_before_ms = now_ms.saturating_add(self.every_ms);
        }
        let due = due.max(pacing.not_before_ms);
        if now_ms < due {
            Next::Wait(due - now_ms)
        } else {
            Next::Step(self.stepped(now_ms))
        }
    }
}

/// Parses `200ms`, `30s`, `5m`, `1h`, or a combination such as `1m30s` (the same
/// grammar as every duration in the configuration).
pub fn parse_duration(raw: &str) -> Result<Duration, crate::duration::DurationError> {
    crate::duration::parse(raw)
}

/// `1m30s`, `200ms`: the inverse of [`parse_duration`] for whole milliseconds.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idc_to_tke() -> Migration {
        let from = [("idc".into(), 100)].into_iter().collect();
        Migration::new("tke".into(), 30, Duration::from_secs(30), 0, from).unwrap()
    }

    #[test]
    fn ramps_in_steps_to_the_target() {
        let mut m = idc_to_tke();
        assert_eq!(m.due_at_ms(), Some(0), "the first step is due at once");
        let mut seen = vec![m.weights().to_string()];
        let mut now = 1_000;
        while !m.done() {
            m = m.stepped(now);
            assert_eq!(m.due_at_ms(), Some(now + 30_000).filter(|_| !m.done()));
            seen.push(m.weights().to_string());
            now += 30_000;
        }
        assert_eq!(
            seen,
            [
                "idc=100,tke=0",
                "idc=70,tke=30",
                "idc=40,tke=60",
                "idc=10,tke=90",
                "idc=0,tke=100"
            ]
        );
    }

    #[test]
    fn pauses_without_target_and_waits_an_interval_after() {
        let mut pacing = Pacing::default();
        let m = idc_to_tke();
        // (now, target active) → what happens; every = 30 s.
        let Next::Step(m) = m.next(0, true, &mut pacing) else {
            panic!("first step is due at once")
        };
        assert_eq!(m.next(10_000, true, &mut pacing), Next::Wait(20_000));
        assert_eq!(m.next(40_000, false, &mut pacing), Next::Paused);
        assert_eq!(m.next(90_000, false, &mut pacing), Next::Paused);
        assert_eq!(m.percent, 30, "nothing moves while paused");
        // Back: overdue since 30 s, yet the target gets a full interval first.
        assert_eq!(m.next(95_000, true, &mut pacing), Next::Wait(30_000));
        assert_eq!(m.next(124_999, true, &mut pacing), Next::Wait(1));
        let Next::Step(m) = m.next(125_000, true, &mut pacing) else {
            panic!("step after the interval")
        };
        assert_eq!((m.percent, m.last_step_ms), (60, Some(125_000)));
        let done = m.stepped(1).stepped(2);
        assert_eq!(done.next(3, false, &mut pacing), Next::Done);
    }

    #[test]
    fn others_keep_their_proportion() {
        let from = [("a".into(), 600), ("b".into(), 400)].into_iter().collect();
        let m = Migration::new("t".into(), 10, Duration::from_secs(1), 30, from).unwrap();
        assert_eq!(m.weights().to_string(), "a=42,b=28,t=30");
    }

    #[test]
    fn json_round_trip_and_validation() {
        let m = idc_to_tke().stepped(5);
        let clusters = ["idc".into(), "tke".into()];
        assert_eq!(Migration::from_json(&m.to_json(), &clusters).unwrap(), m);
        assert!(Migration::from_json(&m.to_json(), &["idc".into()]).is_err());
        let from = BTreeMap::new();
        for (step, every) in [(0, 1000), (101, 1000), (10, 1)] {
            let r = Migration::new(
                "t".into(),
                step,
                Duration::from_millis(every),
                0,
                from.clone(),
            );
            assert!(r.is_err(), "step {step} every {every}");
        }
        assert!(Migration::from_json("{\"target\": 1}", &clusters).is_err());
    }

    #[test]
    fn durations() {
        for (raw, ms) in [("200ms", 200), ("30s", 30_000), ("1m30s", 90_000)] {
            let d = parse_duration(raw).unwrap();
            assert_eq!(d.as_millis(), ms, "{raw}");
            assert_eq!(format_duration(d), raw);
        }
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        for bad in ["", "30", "s", "3x", "-1s", "1.5s", "99999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
