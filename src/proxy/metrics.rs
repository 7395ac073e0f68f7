//! Prometheus metrics of the proxy, served on the admin listener's `/metrics` (and
//! `health_listen`'s).
//!
//! Owns: the registry and every metric the data plane exports, and the per-upstream
//! handles ([`UpstreamMetrics`]) a pool resolves once, so a request never hashes a
//! label. Must never carry unbounded label values (no hosts, no paths, no addresses):
//! status codes or classes, a fixed set of outcomes, and upstreams — at most
//! `metrics_upstreams` of them, the rest counted as `upstream="_other"`, and an
//! upstream's series go when the upstream goes.

use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use podgate_core::model::UpstreamKey;

/// The label of upstreams beyond the cap.
const OTHER: &str = "_other";

/// Request duration buckets, in seconds: 1 ms to 10 s.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upstream connect buckets, in seconds: 0.1 ms to 2.5 s.
const CONNECT_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    upstream: Arc<str>,
    /// `1xx` … `5xx`.
    class: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

type Histograms = Family<UpstreamLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn connect_histogram() -> Histogram {
    Histogram::new(CONNECT_BUCKETS)
}

/// The per-upstream families.
#[derive(Debug)]
struct UpstreamFamilies {
    requests: Family<ClassLabel, Counter>,
    duration: Histograms,
    connect: Histograms,
    sent: Family<UpstreamLabel, Counter>,
    received: Family<UpstreamLabel, Counter>,
    retries: Family<UpstreamLabel, Counter>,
    ejections: Family<UpstreamLabel, Counter>,
    unhealthy: Family<UpstreamLabel, Gauge>,
}

impl UpstreamFamilies {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            connect: Family::new_with_constructor(connect_histogram),
            sent: Family::default(),
            received: Family::default(),
            retries: Family::default(),
            ejections: Family::default(),
            unhealthy: Family::default(),
        }
    }

    fn remove(&self, label: &Arc<str>) {
        let upstream = UpstreamLabel {
            upstream: Arc::clone(label),
        };
        for class in CLASSES {
            self.requests.remove(&ClassLabel {
                upstream: Arc::clone(label),
                class,
            });
        }
        for family in [&self.sent, &self.received, &self.retries, &self.ejections] {
            family.remove(&upstream);
        }
        self.duration.remove(&upstream);
        self.connect.remove(&upstream);
        self.unhealthy.remove(&upstream);
    }
}

/// One upstream's metric handles, resolved once per pool: updating them is a few
/// atomic operations, no label lookup.
#[derive(Debug)]
pub(crate) struct UpstreamMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    connect: Histogram,
    sent: Counter,
    received: Counter,
    retries: Counter,
    ejections: Counter,
    unhealthy: Gauge,
}

impl UpstreamMetrics {
    /// One answered request: its status, how long it took to the last byte, the bytes
    /// it carried from the client and back.
    pub(crate) fn request(&self, status: u16, took: Duration, sent: u64, received: u64) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].inc();
        self.duration.observe(took.as_secs_f64());
        self.sent.inc_by(sent);
        self.received.inc_by(received);
    }
    /// A new connection to an endpoint took `took` to open.
    pub(crate) fn connected(&self, took: Duration) {
        self.connect.observe(took.as_secs_f64());
    }
    pub(crate) fn retry(&self) {
        self.retries.inc();
    }
    pub(crate) fn ejection(&self) {
        self.ejections.inc();
    }
    /// An endpoint failed its health checks (`true`) or passed them again.
    pub(crate) fn health(&self, unhealthy: bool) {
        if unhealthy {
            self.unhealthy.inc();
        } else {
            self.unhealthy.dec();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every metric, cheap to update from any task.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    per_upstream: UpstreamFamilies,
    /// Upstream labels in use, and how many may be.
    labels: Mutex<HashSet<Arc<str>>>,
    max_labels: usize,
    requests: Family<CodeLabel, Counter>,
    access_log_dropped: Counter,
    upstream_failures: Counter,
    retries: Counter,
    ejections: Counter,
    batches: Family<ResultLabel, Counter>,
    state_file_writes: Family<ResultLabel, Counter>,
    generation: Gauge,
    connections: Gauge,
    upstreams: Gauge,
    endpoints: Gauge,
    hosts: Gauge,
    complete: Gauge,
}

impl Metrics {
    /// Metrics with per-upstream series for at most `max_upstreams` upstreams.
    pub(crate) fn new(max_upstreams: usize) -> Self {
        let mut root = Registry::default();
        crate::process_metrics::register(&mut root, "proxy");
        let registry = root.sub_registry_with_prefix("podgate_proxy");
        let per_upstream = UpstreamFamilies::new();
        register_upstream_families(registry, &per_upstream);
        let requests = Family::<CodeLabel, Counter>::default();
        let upstream_failures = Counter::default();
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer was behind or failed",
            access_log_dropped.clone(),
        );
        let retries = Counter::default();
        let ejections = Counter::default();
        let batches = Family::<ResultLabel, Counter>::default();
        let state_file_writes = Family::<ResultLabel, Counter>::default();
        let mut gauge = |name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let generation = gauge("generation", "Generation of the live state");
        let connections = gauge("client_connections", "Client connections open");
        let upstreams = gauge("upstreams", "Upstreams in the live state");
        let endpoints = gauge(
            "endpoints",
            "Endpoints over all upstreams in the live state",
        );
        let hosts = gauge("hosts", "Host entries in the live route table");
        let complete = gauge(
            "state_complete",
            "1 once the proxy holds a full state (a full sync or a restored state file): what /readyz answers",
        );
        registry.register(
            "requests",
            "Requests answered, by status code",
            requests.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream attempts that failed (connect error, reset, timeout, 5xx)",
            upstream_failures.clone(),
        );
        registry.register(
            "retries",
            "Requests retried on another endpoint",
            retries.clone(),
        );
        registry.register(
            "ejections",
            "Endpoints ejected by passive outlier detection",
            ejections.clone(),
        );
        registry.register(
            "admin_batches",
            "Admin API batches, by result",
            batches.clone(),
        );
        registry.register(
            "state_file_writes",
            "Writes of the state file, by result (ok, error)",
            state_file_writes.clone(),
        );
        Self {
            registry: root,
            per_upstream,
            labels: Mutex::new(HashSet::new()),
            max_labels: max_upstreams,
            requests,
            access_log_dropped,
            upstream_failures,
            retries,
            ejections,
            batches,
            state_file_writes,
            generation,
            connections,
            upstreams,
            endpoints,
            hosts,
            complete,
        }
    }

    /// The handles of `key`'s series (`upstream="_other"` once the cap is reached);
    /// `None` when per-upstream metrics are off (`metrics_upstreams: 0`).
    pub(crate) fn upstream(&self, key: &UpstreamKey) -> Option<Arc<UpstreamMetrics>> {
        if self.max_labels == 0 {
            return None;
        }
        let wanted: Arc<str> = Arc::from(key.to_string());
        let label = {
            let mut labels = self.labels.lock();
            if labels.contains(&wanted) || labels.len() < self.max_labels {
                labels.insert(Arc::clone(&wanted));
                wanted
            } else {
                Arc::from(OTHER)
            }
        };
        let f = &self.per_upstream;
        let one = UpstreamLabel {
            upstream: Arc::clone(&label),
        };
        let class = |class| ClassLabel {
            upstream: Arc::clone(&label),
            class,
        };
        Some(Arc::new(UpstreamMetrics {
            by_class: CLASSES.map(|c| f.requests.get_or_create(&class(c)).clone()),
            duration: f.duration.get_or_create(&one).clone(),
            connect: f.connect.get_or_create(&one).clone(),
            sent: f.sent.get_or_create(&one).clone(),
            received: f.received.get_or_create(&one).clone(),
            retries: f.retries.get_or_create(&one).clone(),
            ejections: f.ejections.get_or_create(&one).clone(),
            unhealthy: f.unhealthy.get_or_create(&one).clone(),
        }))
    }

    /// `key` left the live state: its series go (requests still in flight on an older
    /// snapshot count into handles no longer exported).
    pub(crate) fn forget(&self, key: &UpstreamKey) {
        let label: Arc<str> = Arc::from(key.to_string());
        if self.labels.lock().remove(&label) {
            self.per_upstream.remove(&label);
        }
    }

    pub(crate) fn request(&self, code: u16) {
        self.requests.get_or_create(&CodeLabel { code }).inc();
    }
    pub(crate) fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }
    pub(crate) fn access_log_dropped_lines(&self, lines: u64) {
        self.access_log_dropped.inc_by(lines);
    }
    pub(crate) fn upstream_failure(&self) {
        self.upstream_failures.inc();
    }
    pub(crate) fn retry(&self) {
        self.retries.inc();
    }
    pub(crate) fn ejection(&self) {
        self.ejections.inc();
    }
    /// `result` is one of `accepted`, `invalid`, `stale`.
    pub(crate) fn batch(&self, result: &'static str, generation: u64) {
        self.batches.get_or_create(&ResultLabel { result }).inc();
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
    /// `result` is `ok` or `error`.
    pub(crate) fn state_file_write(&self, result: &'static str) {
        self.state_file_writes
            .get_or_create(&ResultLabel { result })
            .inc();
    }
    /// Sizes of the live state after an accepted batch.
    pub(crate) fn live_state(&self, live: &super::state::Snapshot) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (upstreams, endpoints, hosts) = (
            live.upstreams.len(),
            live.endpoints,
            live.router.table().hosts.len(),
        );
        self.complete.set(i64::from(live.complete));
        self.upstreams.set(gauge(upstreams));
        self.endpoints.set(gauge(endpoints));
        self.hosts.set(gauge(hosts));
    }
    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }
    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn register_upstream_families(registry: &mut Registry, f: &UpstreamFamilies) {
    registry.register(
        "upstream_requests",
        "Requests answered per upstream, by status class",
        f.requests.clone(),
    );
    registry.register_with_unit(
        "request_duration",
        "Time from a request's head to the last byte of its answer, per upstream",
        Unit::Seconds,
        f.duration.clone(),
    );
    registry.register_with_unit(
        "upstream_connect_duration",
        "Time to open a new connection to an endpoint, per upstream",
        Unit::Seconds,
        f.connect.clone(),
    );
    registry.register_with_unit(
        "upstream_sent",
        "Request body bytes sent to an upstream",
        Unit::Bytes,
        f.sent.clone(),
    );
    registry.register_with_unit(
        "upstream_received",
        "Response body bytes received from an upstream",
        Unit::Bytes,
        f.received.clone(),
    );
    registry.register(
        "upstream_retries",
        "Requests retried on another endpoint, per upstream",
        f.retries.clone(),
    );
    registry.register(
        "upstream_ejections",
        "Endpoints ejected by passive outlier detection, per upstream",
        f.ejections.clone(),
    );
    registry.register(
        "upstream_unhealthy_endpoints",
        "Endpoints failing their active health checks (no new requests), per upstream",
        f.unhealthy.clone(),
    );
}
