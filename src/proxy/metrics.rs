//! Prometheus metrics of the proxy, served on the admin listener's `/metrics`.
//!
//! Owns: the registry and every metric the data plane exports. Must never carry
//! unbounded label values (no hosts, no paths, no addresses): only status codes and a
//! fixed set of outcomes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    requests: Family<CodeLabel, Counter>,
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
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("podgate_proxy");
        let requests = Family::<CodeLabel, Counter>::default();
        let upstream_failures = Counter::default();
        let retries = Counter::default();
        let ejections = Counter::default();
        let batches = Family::<ResultLabel, Counter>::default();
        let state_file_writes = Family::<ResultLabel, Counter>::default();
        let generation = Gauge::default();
        let connections = Gauge::default();
        let upstreams = Gauge::default();
        let endpoints = Gauge::default();
        let hosts = Gauge::default();
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
        registry.register(
            "generation",
            "Generation of the live state",
            generation.clone(),
        );
        registry.register(
            "client_connections",
            "Client connections open",
            connections.clone(),
        );
        registry.register(
            "upstreams",
            "Upstreams in the live state",
            upstreams.clone(),
        );
        registry.register(
            "endpoints",
            "Endpoints over all upstreams in the live state",
            endpoints.clone(),
        );
        registry.register(
            "hosts",
            "Host entries in the live route table",
            hosts.clone(),
        );
        Self {
            registry,
            requests,
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
        }
    }

    pub(crate) fn request(&self, code: u16) {
        self.requests.get_or_create(&CodeLabel { code }).inc();
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
    pub(crate) fn live_state(&self, upstreams: usize, endpoints: usize, hosts: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
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
