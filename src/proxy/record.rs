//! One request's record, filled in on either request path as it goes: which upstream
//! and endpoint, how many retries, how many bytes each way. When the answer's last byte
//! is out (or the client went away) it is counted once into the upstream's metrics and,
//! when the access log is on, written as one line.
//!
//! Owns: what is recorded and when a request counts as done. Must never copy a string
//! per request when the access log is off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::access_log::{AccessLog, Entry};
use super::balancer::{Backend, Pool};
use super::body::BodySlot;
use super::metrics::Metrics;

/// What the access log needs of the request head; taken only when it is on.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) at: SystemTime,
    pub(crate) client: SocketAddr,
    pub(crate) method: std::borrow::Cow<'static, str>,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) protocol: &'static str,
    pub(crate) headers: Vec<(String, String)>,
}

/// One request in flight.
#[derive(Debug)]
pub(crate) struct Record {
    started: Instant,
    head: Option<Box<Head>>,
    pub(crate) pool: Option<Arc<Pool>>,
    pub(crate) endpoint: Option<Arc<Backend>>,
    pub(crate) retries: u32,
    /// Request body bytes read from the client (the fast path counts them here).
    pub(crate) received: u64,
    /// The general path's client body, which counts what it read.
    pub(crate) client_body: Option<BodySlot>,
    /// Response body bytes sent to the client.
    pub(crate) sent: u64,
}

impl Record {
    /// Starts a record now; `head` is called only when the access log is on.
    pub(crate) fn start(log: &AccessLog, head: impl FnOnce(&AccessLog) -> Head) -> Self {
        Self::new(log.is_on().then(|| Box::new(head(log))))
    }

    /// Starts a record now, with the head the access log keeps (if it is on).
    pub(crate) fn new(head: Option<Box<Head>>) -> Self {
        Self {
            started: Instant::now(),
            head,
            pool: None,
            endpoint: None,
            retries: 0,
            received: 0,
            client_body: None,
            sent: 0,
        }
    }

    /// The request was answered with `status` and its last byte is out: counts it for
    /// its upstream and logs it.
    pub(crate) fn finish(mut self, status: u16, metrics: &Metrics, log: &AccessLog) {
        let took = self.started.elapsed();
        if let Some(endpoint) = &self.endpoint {
            endpoint.stats.observe(took);
        }
        if let Some(body) = self.client_body.take() {
            self.received = body.received();
        }
        if let Some(m) = self.pool.as_ref().and_then(|p| p.metrics(metrics)) {
            m.request(status, took, self.received, self.sent);
        }
        let Some(head) = self.head else { return };
        let entry = Entry {
            head,
            status,
            sent: self.sent,
            received: self.received,
            took,
            upstream: self.pool.as_ref().map(|p| p.spec().key.clone()),
            endpoint: self.endpoint.as_ref().map(|b| (b.cluster.clone(), b.addr)),
            retries: self.retries,
        };
        if !log.write(entry) {
            metrics.access_log_dropped();
        }
    }
}

/// The request method for the log: the common ones without an allocation.
pub(crate) fn method_name(method: &str) -> std::borrow::Cow<'static, str> {
    const COMMON: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    COMMON
        .iter()
        .find(|m| **m == method)
        .map_or_else(|| method.to_owned().into(), |m| (*m).into())
}

/// Header values for the configured `access_log.headers`, given a lookup by name.
pub(crate) fn logged_headers<'a>(
    log: &AccessLog,
    get: impl Fn(&http::HeaderName) -> Option<&'a [u8]>,
) -> Vec<(String, String)> {
    log.headers
        .iter()
        .filter_map(|name| {
            let value = get(name)?;
            Some((
                name.as_str().to_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect()
}
