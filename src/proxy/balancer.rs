//! Choosing an endpoint for one request within one upstream.
//!
//! Owns: the per-upstream [`Pool`] (endpoints grouped by cluster with their shares) and
//! per-endpoint runtime stats (in-flight count, consecutive failures, ejection). Split by
//! cluster share first, then power-of-two-choices on in-flight requests. Draining and
//! ejected endpoints get no new requests. Must never do I/O, block, or rebuild anything
//! on the request path; time comes from `tokio::time` so tests can pause it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

use tokio::time::Instant;

use super::config::OutlierConfig;
use super::h1::upstream::IdleConns;
use super::metrics::{Metrics, UpstreamMetrics};
use podgate_core::model::{ClusterName, EndpointState, Upstream};

/// Runtime state of one endpoint address. It survives upstream updates: a push that
/// re-sends an endpoint keeps its in-flight count, its ejection and its idle connections.
#[derive(Debug, Default)]
pub(crate) struct EndpointStats {
    in_flight: AtomicUsize,
    /// Attempts sent here, and those that failed (connect error, reset, timeout, 5xx).
    requests: AtomicU64,
    errors: AtomicU64,
    /// Idle keep-alive connections of the fast HTTP/1.1 path to this endpoint.
    pub(crate) idle: IdleConns,
    /// Fast path for the common case: nobody ejected, no lock taken.
    ejected: AtomicBool,
    /// Failing its active health checks (`health.rs`): no new requests.
    pub(crate) unhealthy: AtomicBool,
    health: Mutex<Health>,
    /// Answered requests by response time (`LATENCY_BOUNDS_MS`), cumulative: readers
    /// take percentiles of the difference between two reads.
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// Upper bounds (ms) of the response-time buckets of `EndpointLive::latency`; one more
/// bucket holds everything slower.
pub(crate) const LATENCY_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000,
];
const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// `EndpointLive::latency`: the bucket bounds and the counts in each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct LatencyCounts {
    pub(crate) bounds_ms: &'static [u64],
    pub(crate) counts: Vec<u64>,
}

#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

impl EndpointStats {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Out of the rotation: failing its health checks, or ejected for passive failures.
    fn is_ejected(&self, now: Instant) -> bool {
        if self.unhealthy.load(Ordering::Relaxed) {
            return true;
        }
        if !self.ejected.load(Ordering::Relaxed) {
            return false;
        }
        let mut h = self.health.lock();
        match h.ejected_until {
            Some(until) if until > now => true,
            _ => {
                h.ejected_until = None;
                self.ejected.store(false, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records a success: the endpoint is healthy again, backoff starts over.
    pub(crate) fn success(&self) {
        let mut h = self.health.lock();
        h.consecutive_failures = 0;
        // A late success from a request sent before the ejection does not end it.
        if h.ejected_until.is_none_or(|until| until <= Instant::now()) {
            h.ejected_until = None;
            h.ejections = 0;
            self.ejected.store(false, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns the ejection time when this failure ejects it.
    pub(crate) fn failure(&self, outlier: &OutlierConfig) -> Option<std::time::Duration> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut h = self.health.lock();
        h.consecutive_failures += 1;
        if h.consecutive_failures < outlier.consecutive_failures {
            return None;
        }
        h.consecutive_failures = 0;
        let factor = 1u32 << h.ejections.min(16);
        let duration = outlier.base().saturating_mul(factor).min(outlier.max());
        h.ejections = h.ejections.saturating_add(1);
        h.ejected_until = Instant::now().checked_add(duration);
        self.ejected.store(true, Ordering::Relaxed);
        Some(duration)
    }
}

/// One endpoint's live counters, for `GET /v1/upstreams/...` and the admin view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct EndpointLive {
    pub(crate) address: std::net::IpAddr,
    pub(crate) port: u16,
    pub(crate) in_flight: u64,
    /// Attempts sent to it since it was first pushed.
    pub(crate) requests: u64,
    /// Of those, failed ones (connect error, reset, timeout, 5xx).
    pub(crate) errors: u64,
    /// Taken out by passive outlier detection for this many more milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ejected_for_ms: Option<u64>,
    /// Failing its active health checks (absent: passing, or no checks).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) unhealthy: bool,
    /// Answered requests by response time, since it was first pushed.
    pub(crate) latency: LatencyCounts,
}

impl EndpointStats {
    fn live(&self, addr: SocketAddr, now: Instant) -> EndpointLive {
        let until = self.health.lock().ejected_until;
        EndpointLive {
            address: addr.ip(),
            port: addr.port(),
            in_flight: self.in_flight() as u64,
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            ejected_for_ms: until
                .filter(|u| *u > now)
                .map(|u| u64::try_from((u - now).as_millis()).unwrap_or(u64::MAX)),
            unhealthy: self.unhealthy.load(Ordering::Relaxed),
            latency: LatencyCounts {
                bounds_ms: &LATENCY_BOUNDS_MS,
                counts: self
                    .latency
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect(),
            },
        }
    }

    /// Counts one answered request's response time.
    pub(crate) fn observe(&self, took: std::time::Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| ms < *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

/// One endpoint as the balancer sees it.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) cluster: ClusterName,
    /// `addr` as a URI authority, made once per update instead of once per request.
    pub(crate) authority: http::uri::Authority,
    pub(crate) stats: Arc<EndpointStats>,
}

/// Holds one in-flight slot of a backend; released on drop, so a cancelled request
/// never leaks a count.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<EndpointStats>);

impl InFlight {
    fn new(stats: &Arc<EndpointStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(stats))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct ClusterGroup {
    share: u32,
    /// Active endpoints of this cluster.
    members: Vec<Arc<Backend>>,
}

/// Why no endpoint could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PickError {
    #[error("no active endpoint")]
    NoActiveEndpoint,
    #[error("every active endpoint was tried")]
    AllTried,
}

/// An upstream ready for balancing, plus the upstream as pushed (for `GET /v1/state`).
#[derive(Debug)]
pub(crate) struct Pool {
    spec: Upstream,
    groups: Vec<ClusterGroup>,
    /// Every endpoint (active and draining) by address, to carry stats over updates.
    stats: HashMap<SocketAddr, Arc<EndpointStats>>,
    /// This upstream's metric handles, resolved on its first request and carried over
    /// updates.
    metrics: OnceLock<Option<Arc<UpstreamMetrics>>>,
}

impl Pool {
    /// Builds a pool, reusing the stats of `previous` for addresses it already had.
    pub(crate) fn new(spec: Upstream, previous: Option<&Pool>) -> Self {
        let mut stats = HashMap::with_capacity(spec.endpoints.len());
        let mut groups: Vec<(ClusterName, ClusterGroup)> = Vec::new();
        for e in &spec.endpoints {
            let addr = SocketAddr::new(e.address, e.port);
            let s = previous
                .and_then(|p| p.stats.get(&addr))
                .cloned()
                .unwrap_or_default();
            stats.insert(addr, Arc::clone(&s));
            if e.state != EndpointState::Active {
                continue;
            }
            let Ok(authority) = http::uri::Authority::try_from(addr.to_string()) else {
                // A socket address always forms a valid authority; skip it if not.
                continue;
            };
            let backend = Arc::new(Backend {
                addr,
                cluster: e.cluster.clone(),
                authority,
                stats: s,
            });
            if let Some((_, g)) = groups.iter_mut().find(|(c, _)| *c == e.cluster) {
                g.members.push(backend);
            } else {
                let share = spec
                    .shares
                    .iter()
                    .find(|(c, _)| *c == e.cluster)
                    .map_or(0, |(_, s)| *s);
                groups.push((
                    e.cluster.clone(),
                    ClusterGroup {
                        share,
                        members: vec![backend],
                    },
                ));
            }
        }
        // Without any share information every cluster counts the same.
        if groups.iter().all(|(_, g)| g.share == 0) {
            for (_, g) in &mut groups {
                g.share = 1;
            }
        }
        let metrics = OnceLock::new();
        if let Some(held) = previous.and_then(|p| p.metrics.get()) {
            let _ = metrics.set(held.clone());
        }
        Self {
            spec,
            groups: groups.into_iter().map(|(_, g)| g).collect(),
            stats,
            metrics,
        }
    }

    pub(crate) fn spec(&self) -> &Upstream {
        &self.spec
    }

    /// Every endpoint's address with its stats (active and draining).
    pub(crate) fn endpoint_stats(&self) -> &HashMap<SocketAddr, Arc<EndpointStats>> {
        &self.stats
    }

    /// [`Pool::metrics`], as a handle of its own.
    pub(crate) fn metrics_handle(&self, metrics: &Metrics) -> Option<Arc<UpstreamMetrics>> {
        self.metrics
            .get_or_init(|| metrics.upstream(&self.spec.key))
            .clone()
    }

    /// This upstream's metric handles (looked up in `metrics` once per pool lineage);
    /// `None` with per-upstream metrics off.
    pub(crate) fn metrics(&self, metrics: &Metrics) -> Option<&UpstreamMetrics> {
        self.metrics
            .get_or_init(|| metrics.upstream(&self.spec.key))
            .as_deref()
    }

    /// Every endpoint's live counters, in the order of the pushed upstream.
    pub(crate) fn live(&self) -> Vec<EndpointLive> {
        let now = Instant::now();
        self.spec
            .endpoints
            .iter()
            .filter_map(|e| {
                let addr = SocketAddr::new(e.address, e.port);
                Some(self.stats.get(&addr)?.live(addr, now))
            })
            .collect()
    }

    /// Chooses an endpoint not in `tried`. Ejected endpoints are skipped unless every
    /// remaining one is ejected (then trying one beats refusing the request).
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Result<(Arc<Backend>, InFlight), PickError> {
        if self.groups.is_empty() {
            return Err(PickError::NoActiveEndpoint);
        }
        let now = Instant::now();
        let healthy = |b: &Backend| !tried.contains(&b.addr) && !b.stats.is_ejected(now);
        let untried = |b: &Backend| !tried.contains(&b.addr);
        let chosen = self
            .pick_with(&healthy)
            .or_else(|| self.pick_with(&untried))
            .ok_or(PickError::AllTried)?;
        let guard = InFlight::new(&chosen.stats);
        Ok((chosen, guard))
    }

    fn pick_with(&self, eligible: &dyn Fn(&Backend) -> bool) -> Option<Arc<Backend>> {
        // Clusters without an eligible endpoint give their share to the others.
        let mut total = 0u64;
        for g in &self.groups {
            if g.members.iter().any(|b| eligible(b)) {
                total += u64::from(g.share);
            }
        }
        if total == 0 {
            return None;
        }
        let mut ticket = rand::random_range(0..total);
        let group = self.groups.iter().find(|g| {
            if !g.members.iter().any(|b| eligible(b)) {
                return false;
            }
            let share = u64::from(g.share);
            if ticket < share {
                true
            } else {
                ticket -= share;
                false
            }
        })?;
        two_choices(&group.members, eligible)
    }
}

/// Power of two choices: two random eligible members, the one with fewer in flight.
fn two_choices(
    members: &[Arc<Backend>],
    eligible: &dyn Fn(&Backend) -> bool,
) -> Option<Arc<Backend>> {
    let candidates: Vec<&Arc<Backend>> = members.iter().filter(|b| eligible(b)).collect();
    let chosen = match candidates.len() {
        0 => return None,
        1 => candidates[0],
        len => {
            let first = rand::random_range(0..len);
            let mut second = rand::random_range(0..len - 1);
            if second >= first {
                second += 1;
            }
            let (one, other) = (candidates[first], candidates[second]);
            if other.stats.in_flight() < one.stats.in_flight() {
                other
            } else {
                one
            }
        }
    };
    Some(Arc::clone(chosen))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use podgate_core::model::{Endpoint, PortRef, UpstreamKey};

    fn ep(cluster: &str, last: u8, state: EndpointState) -> Endpoint {
        Endpoint {
            cluster: cluster.into(),
            address: [10, 0, 0, last].into(),
            port: 80,
            zone: None,
            node: None,
            state,
            weight: 1,
        }
    }

    fn pool(shares: &[(&str, u32)], endpoints: Vec<Endpoint>) -> Pool {
        Pool::new(
            Upstream {
                health_check: None,
                key: UpstreamKey::new("ns", "svc", PortRef::Number(80)),
                shares: shares.iter().map(|(c, s)| ((*c).into(), *s)).collect(),
                endpoints,
            },
            None,
        )
    }

    fn last_octet(b: &Backend) -> u8 {
        match b.addr.ip() {
            std::net::IpAddr::V4(v4) => v4.octets()[3],
            std::net::IpAddr::V6(_) => 0,
        }
    }

    #[test]
    fn shares_split_by_cluster_and_draining_gets_nothing() {
        let p = pool(
            &[("a", 900), ("b", 100)],
            vec![
                ep("a", 1, EndpointState::Active),
                ep("a", 2, EndpointState::Draining),
                ep("b", 3, EndpointState::Active),
            ],
        );
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            let (b, _) = p.pick(&[]).unwrap();
            counts[usize::from(last_octet(&b))] += 1;
        }
        assert_eq!(counts[2], 0, "draining endpoint picked");
        assert!((8_700..9_300).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn two_choices_prefers_fewer_in_flight() {
        let p = pool(
            &[],
            vec![
                ep("a", 1, EndpointState::Active),
                ep("a", 2, EndpointState::Active),
            ],
        );
        let (busy, _held) = p.pick(&[]).unwrap();
        for _ in 0..100 {
            let (b, _) = p.pick(&[]).unwrap();
            assert_ne!(b.addr, busy.addr);
        }
    }

    #[test]
    fn no_active_endpoint_and_all_tried_are_errors() {
        let p = pool(&[], vec![ep("a", 1, EndpointState::Draining)]);
        assert_eq!(p.pick(&[]).unwrap_err(), PickError::NoActiveEndpoint);
        let p = pool(&[], vec![ep("a", 1, EndpointState::Active)]);
        let (b, _) = p.pick(&[]).unwrap();
        assert_eq!(p.pick(&[b.addr]).unwrap_err(), PickError::AllTried);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_backs_off_and_recovers() {
        let outlier = OutlierConfig {
            consecutive_failures: 2,
            base_ejection_ms: 1_000,
            max_ejection_ms: 3_000,
        };
        let p = pool(
            &[],
            vec![
                ep("a", 1, EndpointState::Active),
                ep("a", 2, EndpointState::Active),
            ],
        );
        let bad = Arc::clone(&p.groups[0].members[0].stats);
        assert_eq!(bad.failure(&outlier), None);
        assert_eq!(bad.failure(&outlier), Some(Duration::from_secs(1)));
        for _ in 0..50 {
            assert_eq!(last_octet(&p.pick(&[]).unwrap().0), 2);
        }
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(!bad.is_ejected(Instant::now()));
        bad.failure(&outlier);
        assert_eq!(bad.failure(&outlier), Some(Duration::from_secs(2)));
        bad.failure(&outlier);
        assert_eq!(
            bad.failure(&outlier),
            Some(Duration::from_secs(3)),
            "capped"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        bad.success();
        bad.failure(&outlier);
        assert_eq!(bad.failure(&outlier), Some(Duration::from_secs(1)), "reset");
    }

    #[test]
    fn stats_survive_an_update() {
        let p = pool(&[], vec![ep("a", 1, EndpointState::Active)]);
        let (_, held) = p.pick(&[]).unwrap();
        let q = Pool::new(p.spec().clone(), Some(&p));
        assert_eq!(q.groups[0].members[0].stats.in_flight(), 1);
        drop(held);
        assert_eq!(q.groups[0].members[0].stats.in_flight(), 0);
    }
}
