//! Active health checks: for every upstream that asks for them (`Upstream::health_check`,
//! from the Service annotation `podgate.io/health-check`), one small task per Active
//! endpoint sends the check every interval, the first at a random point of the first
//! interval and each next one ±10 % (thousands of endpoints never check in lockstep).
//! After `unhealthy_threshold` failures in a row the endpoint takes no new requests
//! (`EndpointStats::unhealthy`, which the balancer skips like an ejection); after
//! `healthy_threshold` passes in a row it takes them again. This is what keeps a stale
//! cluster safe: its API server is down, so its dead pods are not withdrawn, but they
//! fail their checks.
//!
//! Owns: which endpoints are checked with which check, the probe (HTTP/1.1, `Connection:
//! close`, a 2xx or 3xx status line within the timeout passes), the state machine.
//! Must never touch the request path beyond the one flag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::balancer::EndpointStats;
use super::metrics::{Metrics, UpstreamMetrics};
use super::state::{Snapshot, Store};
use podgate_core::model::{EndpointState, HealthCheck, UpstreamKey};

/// One endpoint's checking task and what it checks with.
struct Checker {
    check: HealthCheck,
    stats: Arc<EndpointStats>,
    task: JoinHandle<()>,
    verdict: Arc<Verdict>,
}

/// Where a checker records its verdicts. The task flips the endpoint's flag only under
/// this lock and only while the checker is not stopped, so a checker stopped in the
/// middle of a check can never take the endpoint out afterwards.
struct Verdict {
    stopped: parking_lot::Mutex<bool>,
    /// The handles the task counts into (and the stop counts back out of).
    metrics: Option<Arc<UpstreamMetrics>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Checker {
    /// Stops checking; an endpoint this checker had taken out takes requests again.
    fn stop(&self) {
        let mut stopped = self.verdict.stopped.lock();
        *stopped = true;
        if self.stats.unhealthy.swap(false, Ordering::Relaxed)
            && let Some(m) = &self.verdict.metrics
        {
            m.health(false);
        }
        self.task.abort();
    }
}

/// Runs until `shutdown`: after every change of the live state, starts the checks that
/// are asked for and stops the ones no longer asked for.
pub(crate) fn spawn(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut checkers: HashMap<(UpstreamKey, SocketAddr), Checker> = HashMap::new();
        let mut seen = None;
        let mut changes = store.follow();
        loop {
            let live = store.load();
            if seen != Some(live.generation) {
                seen = Some(live.generation);
                reconcile(&live, &metrics, &mut checkers);
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    })
}

/// Makes `checkers` match what `live` asks for.
fn reconcile(
    live: &Snapshot,
    metrics: &Arc<Metrics>,
    checkers: &mut HashMap<(UpstreamKey, SocketAddr), Checker>,
) {
    let mut wanted: HashMap<(UpstreamKey, SocketAddr), (HealthCheck, Arc<EndpointStats>)> =
        HashMap::new();
    for (key, pool) in &live.upstreams {
        let Some(check) = &pool.spec().health_check else {
            continue;
        };
        for e in &pool.spec().endpoints {
            let addr = SocketAddr::new(e.address, e.port);
            if e.state != EndpointState::Active {
                continue;
            }
            if let Some(stats) = pool.endpoint_stats().get(&addr) {
                wanted.insert((key.clone(), addr), (check.clone(), Arc::clone(stats)));
            }
        }
    }
    // Gone, or checked differently now: stop (and let it take requests again, unless a
    // new checker decides otherwise).
    checkers.retain(|id, c| {
        let keep = wanted
            .get(id)
            .is_some_and(|(check, stats)| *check == c.check && Arc::ptr_eq(stats, &c.stats));
        if !keep {
            c.stop();
        }
        keep
    });
    for (id, (check, stats)) in wanted {
        if checkers.contains_key(&id) {
            continue;
        }
        let verdict = Arc::new(Verdict {
            stopped: parking_lot::Mutex::new(false),
            metrics: live
                .upstreams
                .get(&id.0)
                .and_then(|p| p.metrics_handle(metrics)),
        });
        let task = tokio::spawn(check_forever(
            id.0.clone(),
            id.1,
            check.clone(),
            Arc::clone(&stats),
            Arc::clone(&verdict),
        ));
        checkers.insert(
            id,
            Checker {
                check,
                stats,
                task,
                verdict,
            },
        );
    }
}

/// Checks `addr` every interval and flips `stats.unhealthy` at the thresholds.
async fn check_forever(
    key: UpstreamKey,
    addr: SocketAddr,
    check: HealthCheck,
    stats: Arc<EndpointStats>,
    verdict: Arc<Verdict>,
) {
    let interval = Duration::from_millis(u64::from(check.interval_ms));
    tokio::time::sleep(interval.mul_f64(rand::random::<f64>())).await;
    let (mut passes, mut failures) = (0u8, 0u8);
    loop {
        let passed = probe(addr, &check).await;
        if passed {
            passes = passes.saturating_add(1);
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
            passes = 0;
        }
        let unhealthy = stats.unhealthy.load(Ordering::Relaxed);
        let flip = if unhealthy {
            passes >= check.healthy_threshold
        } else {
            failures >= check.unhealthy_threshold
        };
        if flip {
            let stopped = verdict.stopped.lock();
            if *stopped {
                return;
            }
            stats.unhealthy.store(!unhealthy, Ordering::Relaxed);
            if let Some(m) = &verdict.metrics {
                m.health(!unhealthy);
            }
            drop(stopped);
            if unhealthy {
                tracing::info!(upstream = %key, endpoint = %addr, "endpoint passes its health checks again");
            } else {
                tracing::warn!(upstream = %key, endpoint = %addr, failures, "endpoint fails its health checks: no new requests");
            }
        }
        tokio::time::sleep(interval.mul_f64(0.9 + 0.2 * rand::random::<f64>())).await;
    }
}

/// One check: a 2xx or 3xx status line from `addr` within the timeout.
async fn probe(addr: SocketAddr, check: &HealthCheck) -> bool {
    let timeout = Duration::from_millis(u64::from(check.timeout_ms));
    let attempt = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: podgate-health-check\r\nConnection: close\r\n\r\n",
            check.method.as_str(),
            check.path
        );
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = conn.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        status_passes(&head)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Whether a response's status line says 2xx or 3xx (`None`: not a status line).
fn status_passes(head: &[u8]) -> Option<bool> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|b| *b == b' ');
    let version = words.next()?;
    if !version.starts_with(b"HTTP/1.") {
        return None;
    }
    let code = std::str::from_utf8(words.next()?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    Some((200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::status_passes;

    #[test]
    fn a_2xx_or_3xx_status_line_passes() {
        assert_eq!(status_passes(b"HTTP/1.1 200 OK\r\n"), Some(true));
        assert_eq!(status_passes(b"HTTP/1.1 204\r\n"), Some(true));
        assert_eq!(status_passes(b"HTTP/1.0 302 Found\r\n"), Some(true));
        assert_eq!(
            status_passes(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(false)
        );
        assert_eq!(status_passes(b"HTTP/1.1 404 Not Found\r\n"), Some(false));
        assert_eq!(status_passes(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_passes(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(status_passes(b""), None);
    }
}
